"""Model builders (ONNX written with onnx.helper, random weights, no downloads)."""
from .builders import gemm_model, mlp, small_cnn
from .analysis import analytic_macs

__all__ = ["analytic_macs", "gemm_model", "mlp", "small_cnn"]
