"""The demo model zoo: small ONNX networks (random weights, fixed seed) served by the python backend via onnxruntime.

They behave like real DNNs on a CPU — truly batched, different compute/memory characters:
- convnet: conv-heavy, compute bound, small weights;
- mlp:     matmul-heavy with ~32 MB of weights, memory-bandwidth bound at small batch;
- tinynet: light and fast, for high-rate workloads.
Each model reads the config parameter ``threads`` (onnxruntime intra-op threads): the CPU resource share knob.
Latency does not depend on weight values, so random weights are enough. Regeneration is byte-deterministic.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from igniter.atomic import atomic_write
from igniter.ownership import make_owned_dir, require_owned
from igniter.triton.config import new_model_config, set_instance_group, set_parameter, write_config

OPSET = 17
IR_VERSION = 9  # what onnxruntime >= 1.17 reads
MAX_BATCH = 32


@dataclass(frozen=True)
class DemoModel:
    name: str
    input_dims: tuple[int, ...]
    output_dim: int
    character: str


DEMO_MODELS = (
    DemoModel("convnet", (3, 32, 32), 10, "conv-heavy, compute bound"),
    DemoModel("mlp", (1024,), 1000, "matmul-heavy, memory bound (32 MB weights)"),
    DemoModel("tinynet", (256,), 16, "light, high rate"),
)

MODEL_PY = Path(__file__).with_name("demo_model_backend.py")


def _weights(rng: np.random.RandomState, *shape: int):
    from onnx import numpy_helper  # noqa: PLC0415

    scale = np.sqrt(2.0 / max(1, int(np.prod(shape[1:]))))
    return lambda name: numpy_helper.from_array((rng.randn(*shape) * scale).astype(np.float32), name)


def _conv(nodes, inits, rng, name, x, cin, cout, stride):
    inits.append(_weights(rng, cout, cin, 3, 3)(f"{name}_w"))
    from onnx import helper  # noqa: PLC0415

    nodes.append(helper.make_node("Conv", [x, f"{name}_w"], [f"{name}_c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                                  strides=[stride, stride]))
    nodes.append(helper.make_node("Relu", [f"{name}_c"], [f"{name}_r"]))
    return f"{name}_r"


def _gemm(nodes, inits, rng, name, x, fin, fout, relu=True):
    from onnx import helper  # noqa: PLC0415

    inits.append(_weights(rng, fin, fout)(f"{name}_w"))
    nodes.append(helper.make_node("MatMul", [x, f"{name}_w"], [f"{name}_m"]))
    if not relu:
        return f"{name}_m"
    nodes.append(helper.make_node("Relu", [f"{name}_m"], [f"{name}_r"]))
    return f"{name}_r"


def build_onnx(model: DemoModel, seed: int = 0) -> bytes:
    from onnx import TensorProto, helper  # noqa: PLC0415

    rng = np.random.RandomState(seed)
    nodes: list = []
    inits: list = []
    if model.name == "convnet":
        x = _conv(nodes, inits, rng, "c1", "INPUT0", 3, 32, 1)
        x = _conv(nodes, inits, rng, "c2", x, 32, 64, 2)
        x = _conv(nodes, inits, rng, "c3", x, 64, 64, 1)
        x = _conv(nodes, inits, rng, "c4", x, 64, 128, 2)
        nodes.append(helper.make_node("GlobalAveragePool", [x], ["gap"]))
        nodes.append(helper.make_node("Flatten", ["gap"], ["flat"]))
        last = _gemm(nodes, inits, rng, "fc", "flat", 128, model.output_dim, relu=False)
    elif model.name == "mlp":
        x = _gemm(nodes, inits, rng, "l1", "INPUT0", 1024, 2048)
        x = _gemm(nodes, inits, rng, "l2", x, 2048, 2048)
        last = _gemm(nodes, inits, rng, "l3", x, 2048, model.output_dim, relu=False)
    else:
        x = _gemm(nodes, inits, rng, "l1", "INPUT0", 256, 256)
        last = _gemm(nodes, inits, rng, "l2", x, 256, model.output_dim, relu=False)
    nodes.append(helper.make_node("Identity", [last], ["OUTPUT0"]))
    graph = helper.make_graph(
        nodes, model.name,
        [helper.make_tensor_value_info("INPUT0", TensorProto.FLOAT, ["batch", *model.input_dims])],
        [helper.make_tensor_value_info("OUTPUT0", TensorProto.FLOAT, ["batch", model.output_dim])],
        initializer=inits,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="igniter-demo-zoo")
    proto.ir_version = IR_VERSION
    return proto.SerializeToString(deterministic=True)


def demo_config(model: DemoModel):
    from tritonclient.grpc import model_config_pb2 as mc  # noqa: PLC0415

    cfg = new_model_config(model.name, backend="python", max_batch_size=MAX_BATCH)
    cfg.input.add(name="INPUT0", data_type=mc.TYPE_FP32, dims=list(model.input_dims))
    cfg.output.add(name="OUTPUT0", data_type=mc.TYPE_FP32, dims=[model.output_dim])
    set_instance_group(cfg, 1, "KIND_CPU")
    set_parameter(cfg, "threads", 1)
    return cfg


# Generated only where igniter owns the directory (the project's triton_repo carries the marker, committed), never
# into a user's repository that merely has models named like these.
_NOT_OURS = "give a new directory, or the project's triton_repo; igniter does not write into your repositories"


def write_demo_repo(repo: Path, seed: int = 0) -> dict[str, str]:
    """(Re)generate every demo model under ``repo``; returns sha256 of each model.onnx."""
    make_owned_dir(repo, "igniter demo models (igniter/triton/demo_zoo.py)", "demo model repository", _NOT_OURS)
    digests = {}
    for model in DEMO_MODELS:
        onnx_bytes = build_onnx(model, seed)
        atomic_write(repo / model.name / "1" / "model.onnx", onnx_bytes)
        atomic_write(repo / model.name / "1" / "model.py", MODEL_PY.read_bytes())
        write_config(demo_config(model), repo / model.name / "config.pbtxt")
        digests[model.name] = hashlib.sha256(onnx_bytes).hexdigest()
    return digests


def ensure_demo_repo(repo: Path) -> Path:
    """Generate the demo models' files if missing (weights and backend code are build outputs, not committed)."""
    built = [repo / m.name / "1" / f for m in DEMO_MODELS for f in ("model.onnx", "model.py")]
    if not all(p.exists() for p in built):
        require_owned(repo, "demo model repository", _NOT_OURS)
        write_demo_repo(repo)
    return repo
