"""Repository API and inference against a Triton server (local or remote), over gRPC.

Triton's client only says "failed to poll from model repository" when a load is rejected; the real reason is in
the server log (local servers) or the repository index (remote). We surface it.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.utils import InferenceServerException, triton_to_np_dtype

from igniter.errors import UserError
from igniter.triton.config import ModelConfig, config_json
from igniter.triton.server import Endpoints, LocalServer, ServerLog


class TritonClient:
    """A thin, typed handle on one server. ``log_source``: the LocalServer or its ServerLog when we can read the log."""

    def __init__(self, endpoints: Endpoints, log_source: "LocalServer | ServerLog | None" = None, timeout_s: float = 120.0):
        self.endpoints = endpoints
        self.timeout_s = timeout_s
        self.grpc = grpcclient.InferenceServerClient(endpoints.grpc)
        self._configs: dict[str, ModelConfig] = {}
        self._log = ServerLog(log_source.log_path) if isinstance(log_source, LocalServer) else log_source

    @classmethod
    def connect(cls, server: "str | Endpoints | LocalServer", timeout_s: float = 10.0) -> "TritonClient":
        if isinstance(server, LocalServer):
            client = cls(server.endpoints, log_source=server)
        else:
            client = cls(server if isinstance(server, Endpoints) else Endpoints.from_url(server))
        client.wait_live(timeout_s)
        return client

    def __enter__(self) -> "TritonClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.grpc.close()

    def wait_live(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if self.grpc.is_server_live():
                    return
            except InferenceServerException:
                pass
            if time.monotonic() > deadline:
                raise UserError(f"no Triton server answers on gRPC at {self.endpoints.grpc} (HTTP {self.endpoints.http})",
                                "start one (igniter serve --repo DIR) or pass the right --server URL")
            time.sleep(0.2)

    # -- repository API -------------------------------------------------------------------------------------------
    def load(self, name: str, config: ModelConfig | None = None) -> None:
        """Load (or live-reload) ``name``, optionally overriding its config. Raises UserError with Triton's reason."""
        log_offset = self._log.size() if self._log else 0
        fix = "fix the model's config.pbtxt or the planned settings; the previous version keeps serving"
        try:
            self._load_watching_log(name, config, log_offset)
        except InferenceServerException as err:
            reason = self._failure_reason(name, log_offset) or err.message()
            raise UserError(f"Triton rejected model {name!r}: {reason}", fix) from err
        except _LoggedFailure as failure:
            raise UserError(f"Triton cannot load model {name!r}: {failure}", fix) from None
        self._configs.pop(name, None)

    def _load_watching_log(self, name: str, config: ModelConfig | None, log_offset: int) -> None:
        """The load call, abandoned as soon as the server log says the model cannot load: Triton's answer may never
        come (a python model without model.py stays LOADING, its stub already gone)."""
        outcome: list[BaseException | None] = []
        call = threading.Thread(target=self._load_call, args=(name, config, outcome), daemon=True)
        call.start()
        while call.is_alive():
            call.join(0.2)
            failure = self._log.load_failure(since=log_offset) if self._log is not None and call.is_alive() else None
            if failure:
                raise _LoggedFailure(failure)  # the call stays blocked until close() cancels it
        if outcome and outcome[0] is not None:
            raise outcome[0]

    def _load_call(self, name: str, config: ModelConfig | None, outcome: list) -> None:
        try:
            self.grpc.load_model(name, config=config_json(config) if config is not None else None)
            outcome.append(None)
        except BaseException as err:  # noqa: BLE001 - handed to the waiting thread, which raises it
            outcome.append(err)

    def unload(self, name: str, wait: bool = True) -> None:
        self.grpc.unload_model(name)
        deadline = time.monotonic() + self.timeout_s
        while wait and self.is_ready(name) and time.monotonic() < deadline:
            time.sleep(0.05)
        self._configs.pop(name, None)

    def _failure_reason(self, name: str, log_offset: int) -> str:
        if self._log is not None:
            time.sleep(0.05)  # the server writes the reason just before answering
            return self._log.tail(lines=2, since=log_offset)
        for row in self.index():
            if row["name"] == name and row.get("reason"):
                return row["reason"]
        return ""

    def index(self) -> list[dict]:
        response = self.grpc.get_model_repository_index(as_json=True)
        return [{"name": m["name"], "version": m.get("version", ""), "state": m.get("state", ""),
                 "reason": m.get("reason", "")} for m in response.get("models", [])]

    def is_ready(self, name: str) -> bool:
        try:
            return bool(self.grpc.is_model_ready(name))
        except InferenceServerException:
            return False

    def config(self, name: str) -> ModelConfig:
        """The config the server is actually running (read back from Triton)."""
        if name not in self._configs:
            response = self.grpc.get_model_config(name)
            self._configs[name] = response.config
        return self._configs[name]

    # -- inference --------------------------------------------------------------------------------------------------
    def make_inputs(self, name: str, batch: int, seed: int = 0) -> list[grpcclient.InferInput]:
        """Random inputs of the right shape and type for ``batch`` samples (the config says what)."""
        cfg = self.config(name)
        largest = max(cfg.max_batch_size, 1)   # 0: the model takes no batch dimension, one sample per request
        if batch > largest:
            raise UserError(f"batch {batch} is above the largest batch model {name!r} takes ({largest})",
                            f"use a batch of at most {largest}, or raise max_batch_size in its config.pbtxt")
        rng = np.random.default_rng(seed)
        inputs = []
        for spec in cfg.input:
            dims = [int(d) if d > 0 else 1 for d in spec.dims]
            shape = ([batch] if cfg.max_batch_size > 0 else []) + dims
            dtype = triton_to_np_dtype(_wire_type(spec.data_type))
            array = rng.random(shape).astype(dtype)
            tensor = grpcclient.InferInput(spec.name, shape, _wire_type(spec.data_type))
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        return inputs

    def infer(self, name: str, inputs: list[grpcclient.InferInput]) -> dict[str, np.ndarray]:
        result = self.grpc.infer(name, inputs, client_timeout=self.timeout_s)
        return {out.name: result.as_numpy(out.name) for out in self.config(name).output}


class _LoggedFailure(Exception):
    """The server log's reason a model cannot load."""


def _wire_type(data_type: int) -> str:
    name = mc.DataType.Name(data_type).replace("TYPE_", "")
    return {"STRING": "BYTES"}.get(name, name)


def resolve_repo(path: str | Path) -> Path:
    repo = Path(path)
    if not repo.is_dir():
        raise UserError(f"model repository {str(path)!r} does not exist or is not a directory",
                        "pass --repo pointing at a Triton model repository (e.g. triton_repo)")
    return repo
