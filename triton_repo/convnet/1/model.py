"""Triton python-backend model: runs ``model.onnx`` beside it with onnxruntime, batching requests together.

Copied into every demo model's version directory by igniter.triton.demo_zoo. Config parameter ``threads`` sets the
intra-op thread count (the CPU share knob); spinning is off so idle threads do not steal a co-runner's core.
"""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, int(params.get("threads", "1") or 1))
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def execute(self, requests):
        arrays = [pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy() for r in requests]
        outputs = self.session.run(["OUTPUT0"], {"INPUT0": np.concatenate(arrays).astype(np.float32, copy=False)})[0]
        responses, start = [], 0
        for array in arrays:
            rows = outputs[start:start + array.shape[0]]
            start += array.shape[0]
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", rows)]))
        return responses
