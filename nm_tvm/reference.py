"""The reference every result is checked against: ONNX Runtime on the CPU.

Kept apart from validation so that what validation builds on (error bounds, per-layer
matching, model loaders) can run the reference without importing validation itself."""
from __future__ import annotations

import numpy as np


def onnx_runtime_outputs(proto, inputs: dict) -> list[np.ndarray]:
    """All outputs of ``proto`` (a ModelProto) on ``inputs``, in the graph's output order."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(proto.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    return session.run(None, inputs)
