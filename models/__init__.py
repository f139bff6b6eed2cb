"""Model builders (ONNX written with onnx.helper, random weights, no downloads)."""
from .builders import gemm_model, mlp, small_cnn
from .analysis import analytic_macs
from .zoo import (bert_base, bert_encoder, bert_tiny, gpt2_block, mobilenet_v2, resnet, resnet18,
                  resnet50, vit, vit_tiny)

__all__ = ["analytic_macs", "bert_base", "bert_encoder", "bert_tiny", "gemm_model",
           "gpt2_block", "mlp", "mobilenet_v2", "resnet", "resnet18", "resnet50", "small_cnn",
           "vit", "vit_tiny"]
