"""The model zoo: ONNX builders for standard architectures, random weights, no downloads.

ResNet-18/50, MobileNetV2, a BERT encoder (any size; ``bert_tiny`` / ``bert_base`` presets),
a ViT and a GPT-2 block, each written node by node with ``onnx.helper`` in the form that
exporters produce (erf GELU, LayerNormalization, Softmax, Clip as ReLU6, ...), so the compiler
sees what it will see in real models. The BERT builder also takes real weights (Hugging Face
parameter names): ``models.pretrained`` builds all-MiniLM-L6-v2 with it from safetensors.

Sizes are parameters: tests use small instances; the defaults are the published sizes.
"""
from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import numpy_helper

from .builders import _Graph


class _ZooGraph(_Graph):
    """``_Graph`` plus integer constants, given (real) weights and transformer blocks."""

    def __init__(self, seed: int, weights: dict | None = None):
        super().__init__(seed)
        self.given = weights or {}

    def iconst(self, name: str, values) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(values, np.int64), name))
        return name

    def param(self, name: str, shape, kind: str = "weight", transpose: bool = False) -> str:
        """A given weight (torch Linear layout [out, in] is transposed for MatMul) or random."""
        if name in self.given:
            value = np.asarray(self.given[name], np.float32)
            value = value.T if transpose else value
            if tuple(value.shape) != tuple(shape):
                raise ValueError(f"weight '{name}' has shape {value.shape}; expected {shape}")
            return self.const(name, value)
        if kind == "ones":
            return self.const(name, self.rng.uniform(0.8, 1.2, shape))
        if kind == "bias":
            return self.const(name, self.rng.normal(0, 0.02, shape))
        fan_in = shape[0] if transpose or len(shape) == 2 else int(np.prod(shape[1:]))
        return self.const(name, self.rng.standard_normal(shape) / np.sqrt(fan_in))

    def linear(self, x: str, name: str, d_in: int, d_out: int) -> str:
        w = self.param(f"{name}.weight", (d_in, d_out), transpose=True)
        b = self.param(f"{name}.bias", (d_out,), "bias")
        return self.node("Add", [self.node("MatMul", [x, w], f"{name}.matmul"), b], name)

    def layer_norm(self, x: str, name: str, d: int, eps: float) -> str:
        return self.node("LayerNormalization",
                         [x, self.param(f"{name}.weight", (d,), "ones"),
                          self.param(f"{name}.bias", (d,), "bias")], name, axis=-1, epsilon=eps)

    def gelu(self, x: str, name: str, form: str) -> str:
        """GELU as exporters write it: erf form (BERT, ViT) or tanh form (GPT-2)."""
        if form == "erf":
            t = self.node("Div", [x, self.const(f"{name}.sqrt2", np.float32(math.sqrt(2)))],
                          f"{name}.div")
            t = self.node("Erf", [t], f"{name}.erf")
            t = self.node("Add", [t, self.const(f"{name}.one", np.float32(1))], f"{name}.add")
            t = self.node("Mul", [x, t], f"{name}.mul")
            return self.node("Mul", [t, self.const(f"{name}.half", np.float32(0.5))], name)
        cube = self.node("Mul", [self.node("Mul", [x, x], f"{name}.sq"), x], f"{name}.cube")
        inner = self.node("Add", [x, self.node("Mul", [cube, self.const(
            f"{name}.c", np.float32(0.044715))], f"{name}.cubec")], f"{name}.inner")
        inner = self.node("Mul", [inner, self.const(f"{name}.k", np.float32(
            math.sqrt(2 / math.pi)))], f"{name}.scaled")
        t = self.node("Add", [self.node("Tanh", [inner], f"{name}.tanh"),
                              self.const(f"{name}.one", np.float32(1))], f"{name}.add")
        t = self.node("Mul", [x, t], f"{name}.mul")
        return self.node("Mul", [t, self.const(f"{name}.half", np.float32(0.5))], name)

    def attention(self, x: str, name: str, d: int, heads: int, causal_seq: int | None,
                  names: dict, bias_input: str | None = None) -> str:
        """Multi-head self-attention; ``names`` maps q/k/v/out to parameter prefixes."""
        dh = d // heads
        split = self.iconst(f"{name}.split_shape", [0, 0, heads, dh])
        q, k, v = (self.node("Reshape", [self.linear(x, names[p], d, d), split],
                             f"{name}.{p}_heads") for p in ("q", "k", "v"))
        q = self.node("Transpose", [q], f"{name}.q_t", perm=[0, 2, 1, 3])
        k = self.node("Transpose", [k], f"{name}.k_t", perm=[0, 2, 3, 1])
        v = self.node("Transpose", [v], f"{name}.v_t", perm=[0, 2, 1, 3])
        s = self.node("MatMul", [q, k], f"{name}.scores")
        s = self.node("Div", [s, self.const(f"{name}.scale", np.float32(math.sqrt(dh)))],
                      f"{name}.scaled")
        if causal_seq is not None:
            mask = np.triu(np.full((causal_seq, causal_seq), -10000.0, np.float32), 1)
            s = self.node("Add", [s, self.const(f"{name}.causal_mask", mask[None, None])],
                          f"{name}.masked")
        if bias_input is not None:  # additive padding mask [batch, 1, 1, seq]
            s = self.node("Add", [s, bias_input], f"{name}.padding_masked")
        p = self.node("Softmax", [s], f"{name}.probs", axis=-1)
        o = self.node("MatMul", [p, v], f"{name}.context")
        o = self.node("Transpose", [o], f"{name}.context_t", perm=[0, 2, 1, 3])
        o = self.node("Reshape", [o, self.iconst(f"{name}.merge_shape", [0, 0, d])],
                      f"{name}.merged")
        return self.linear(o, names["out"], d, d)

    def transformer_layer(self, x: str, prefix: str, d: int, heads: int, ffn: int, *,
                          norm: str, gelu: str, eps: float, causal_seq: int | None = None,
                          hf_bert_names: bool = False, bias_input: str | None = None) -> str:
        """Post-norm (BERT) or pre-norm (ViT, GPT-2) encoder/decoder layer."""
        if hf_bert_names:
            names = {"q": f"{prefix}.attention.self.query", "k": f"{prefix}.attention.self.key",
                     "v": f"{prefix}.attention.self.value",
                     "out": f"{prefix}.attention.output.dense",
                     "ln1": f"{prefix}.attention.output.LayerNorm",
                     "fc1": f"{prefix}.intermediate.dense", "fc2": f"{prefix}.output.dense",
                     "ln2": f"{prefix}.output.LayerNorm"}
        else:
            names = {k: f"{prefix}.{k}" for k in ("q", "k", "v", "out", "ln1", "fc1", "fc2",
                                                    "ln2")}
        if norm == "post":
            a = self.attention(x, f"{prefix}.attn", d, heads, causal_seq, names, bias_input)
            x = self.layer_norm(self.node("Add", [a, x], f"{prefix}.res1"), names["ln1"], d, eps)
            h = self.gelu(self.linear(x, names["fc1"], d, ffn), f"{prefix}.gelu", gelu)
            h = self.linear(h, names["fc2"], ffn, d)
            return self.layer_norm(self.node("Add", [h, x], f"{prefix}.res2"), names["ln2"], d,
                                   eps)
        a = self.attention(self.layer_norm(x, names["ln1"], d, eps), f"{prefix}.attn", d, heads,
                           causal_seq, names)
        x = self.node("Add", [x, a], f"{prefix}.res1")
        h = self.linear(self.layer_norm(x, names["ln2"], d, eps), names["fc1"], d, ffn)
        h = self.linear(self.gelu(h, f"{prefix}.gelu", gelu), names["fc2"], ffn, d)
        return self.node("Add", [x, h], f"{prefix}.res2")

    def conv_bn(self, x: str, name: str, c_in: int, c_out: int, k: int, stride: int = 1,
                groups: int = 1, act: str | None = "relu") -> str:
        w = self.weight(f"{name}.weight", (c_out, c_in // groups, k, k))
        y = self.node("Conv", [x, w], name, kernel_shape=[k, k], strides=[stride] * 2,
                      pads=[k // 2] * 4, group=groups)
        bn = [self.const(f"{name}_bn.scale", self.rng.uniform(0.5, 1.5, c_out)),
              self.const(f"{name}_bn.bias", self.rng.normal(0, 0.1, c_out)),
              self.const(f"{name}_bn.mean", self.rng.normal(0, 0.1, c_out)),
              self.const(f"{name}_bn.var", self.rng.uniform(0.5, 1.5, c_out))]
        y = self.node("BatchNormalization", [y] + bn, f"{name}_bn", epsilon=1e-5)
        if act == "relu":
            return self.node("Relu", [y], f"{name}_relu")
        if act == "relu6":
            return self.node("Clip", [y, self.const(f"{name}.min", np.float32(0)),
                                      self.const(f"{name}.max", np.float32(6))], f"{name}_relu6")
        return y

    def classifier(self, x: str, c_in: int, classes: int) -> str:
        x = self.node("GlobalAveragePool", [x], "gap")
        x = self.node("Flatten", [x], "flatten", axis=1)
        w = self.weight("fc.weight", (classes, c_in))
        b = self.const("fc.bias", self.rng.normal(0, 0.1, classes))
        return self.node("Gemm", [x, w, b], "logits", transB=1)


# ----------------------------------------------------------------------------- CNNs
def resnet(depth: int = 18, batch: int = 1, size: int = 224, width: int = 64,
           classes: int = 1000, seed: int = 0) -> onnx.ModelProto:
    """ResNet-18 (basic blocks) or ResNet-50 (bottlenecks); ``width`` scales every stage."""
    blocks = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3)}.get(depth)
    if blocks is None:
        raise ValueError(f"depth must be 18, 34 or 50 (got {depth})")
    bottleneck = depth >= 50
    g = _ZooGraph(seed)
    x = g.conv_bn("input", "stem", 3, width, 7, stride=2)
    x = g.node("MaxPool", [x], "stem_pool", kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4)
    c_in = width
    for stage, n in enumerate(blocks):
        planes = width * 2 ** stage
        c_out = planes * (4 if bottleneck else 1)
        for i in range(n):
            stride = 2 if stage > 0 and i == 0 else 1
            name = f"layer{stage + 1}.{i}"
            shortcut = x
            if stride != 1 or c_in != c_out:
                shortcut = g.conv_bn(x, f"{name}.downsample", c_in, c_out, 1, stride, act=None)
            if bottleneck:
                y = g.conv_bn(x, f"{name}.conv1", c_in, planes, 1)
                y = g.conv_bn(y, f"{name}.conv2", planes, planes, 3, stride)
                y = g.conv_bn(y, f"{name}.conv3", planes, c_out, 1, act=None)
            else:
                y = g.conv_bn(x, f"{name}.conv1", c_in, planes, 3, stride)
                y = g.conv_bn(y, f"{name}.conv2", planes, c_out, 3, act=None)
            x = g.node("Relu", [g.node("Add", [y, shortcut], f"{name}.add")], f"{name}.relu")
            c_in = c_out
    x = g.classifier(x, c_in, classes)
    return g.model(f"resnet{depth}", {"input": [batch, 3, size, size]}, x, [batch, classes])


def resnet18(**kwargs) -> onnx.ModelProto:
    return resnet(18, **kwargs)


def resnet50(**kwargs) -> onnx.ModelProto:
    return resnet(50, **kwargs)


_MBV2_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                  (6, 160, 3, 2), (6, 320, 1, 1))


def _divisible(v: float, d: int = 8) -> int:
    return max(d, int(v + d / 2) // d * d)


def mobilenet_v2(batch: int = 1, size: int = 224, width_mult: float = 1.0, classes: int = 1000,
                 seed: int = 0) -> onnx.ModelProto:
    """MobileNetV2: inverted residuals with depthwise 3x3 convs and ReLU6 (Clip 0..6)."""
    g = _ZooGraph(seed)
    c_in = _divisible(32 * width_mult)
    x = g.conv_bn("input", "stem", 3, c_in, 3, stride=2, act="relu6")
    for b, (t, c, n, s) in enumerate(_MBV2_SETTINGS):
        c_out = _divisible(c * width_mult)
        for i in range(n):
            name, stride, hidden = f"block{b}.{i}", s if i == 0 else 1, c_in * t
            y = x if t == 1 else g.conv_bn(x, f"{name}.expand", c_in, hidden, 1, act="relu6")
            y = g.conv_bn(y, f"{name}.dw", hidden, hidden, 3, stride, groups=hidden, act="relu6")
            y = g.conv_bn(y, f"{name}.project", hidden, c_out, 1, act=None)
            if stride == 1 and c_in == c_out:
                y = g.node("Add", [x, y], f"{name}.add")
            x, c_in = y, c_out
    last = _divisible(1280 * max(1.0, width_mult))
    x = g.conv_bn(x, "head", c_in, last, 1, act="relu6")
    x = g.classifier(x, last, classes)
    return g.model("mobilenet_v2", {"input": [batch, 3, size, size]}, x, [batch, classes])


# ----------------------------------------------------------------------------- transformers
def bert_encoder(layers: int = 12, hidden: int = 768, heads: int = 12,
                 intermediate: int | None = None, batch: int | str = 1, seq: int | str = 128,
                 eps: float = 1e-12, weights: dict | None = None, seed: int = 0,
                 name: str = "bert_encoder", mask: bool = False) -> onnx.ModelProto:
    """A BERT encoder: embedding LayerNorm, then post-norm layers (erf GELU).

    Input ``embeddings`` [batch, seq, hidden] is the sum of word, position and token-type
    embeddings (a table lookup, done by the caller: ``models.pretrained`` does it for real
    models); output ``last_hidden_state``. ``batch``/``seq`` may be names (dynamic dims).
    ``weights`` takes Hugging Face BERT names (``encoder.layer.0.attention.self.query.weight``,
    ...) in torch layout; missing ones are random. ``mask`` adds the input ``attention_bias``
    [batch, 1, 1, seq] (0 for tokens, -10000 for padding), added to every attention score.
    """
    if hidden % heads:
        raise ValueError(f"hidden ({hidden}) must be a multiple of heads ({heads})")
    intermediate = intermediate or 4 * hidden
    g = _ZooGraph(seed, weights)
    x = g.layer_norm("embeddings", "embeddings.LayerNorm", hidden, eps)
    for i in range(layers):
        x = g.transformer_layer(x, f"encoder.layer.{i}", hidden, heads, intermediate,
                                norm="post", gelu="erf", eps=eps, hf_bert_names=True,
                                bias_input="attention_bias" if mask else None)
    x = g.node("Identity", [x], "last_hidden_state")
    inputs = {"embeddings": [batch, seq, hidden]}
    if mask:
        inputs["attention_bias"] = [batch, 1, 1, seq]
    return g.model(name, inputs, x, [batch, seq, hidden])


def bert_tiny(batch: int = 1, seq: int = 16, **kwargs) -> onnx.ModelProto:
    """BERT-tiny (2 layers, hidden 128, 2 heads, FFN 512: google/bert_uncased_L-2_H-128_A-2)."""
    return bert_encoder(2, 128, 2, 512, batch, seq, name="bert_tiny", **kwargs)


def bert_base(batch: int = 1, seq: int = 128, **kwargs) -> onnx.ModelProto:
    """BERT-base (12 layers, hidden 768, 12 heads, FFN 3072)."""
    return bert_encoder(12, 768, 12, 3072, batch, seq, name="bert_base", **kwargs)


def vit(batch: int = 1, size: int = 224, patch: int = 16, hidden: int = 768, layers: int = 12,
        heads: int = 12, mlp: int | None = None, classes: int = 1000,
        seed: int = 0) -> onnx.ModelProto:
    """ViT: patch-embedding conv, class token, position embedding, pre-norm layers, head."""
    if size % patch:
        raise ValueError(f"size ({size}) must be a multiple of patch ({patch})")
    mlp = mlp or 4 * hidden
    n = (size // patch) ** 2
    g = _ZooGraph(seed)
    w = g.weight("patch_embed.weight", (hidden, 3, patch, patch))
    x = g.node("Conv", ["input", w, g.const("patch_embed.bias", g.rng.normal(0, 0.02, hidden))],
               "patch_embed", kernel_shape=[patch, patch], strides=[patch, patch])
    x = g.node("Reshape", [x, g.iconst("patch_shape", [batch, hidden, n])], "patches")
    x = g.node("Transpose", [x], "tokens", perm=[0, 2, 1])
    cls = g.const("cls_token", np.broadcast_to(g.rng.normal(0, 0.02, (1, 1, hidden)),
                                               (batch, 1, hidden)))
    x = g.node("Concat", [cls, x], "with_cls", axis=1)
    x = g.node("Add", [x, g.const("pos_embed", g.rng.normal(0, 0.02, (1, n + 1, hidden)))],
               "embedded")
    for i in range(layers):
        x = g.transformer_layer(x, f"blocks.{i}", hidden, heads, mlp, norm="pre", gelu="erf",
                                eps=1e-6)
    x = g.layer_norm(x, "norm", hidden, 1e-6)
    x = g.node("Slice", [x, g.iconst("cls_start", [0]), g.iconst("cls_end", [1]),
                         g.iconst("cls_axis", [1])], "cls_out")
    x = g.node("Flatten", [x], "cls_flat", axis=1)
    w = g.weight("head.weight", (classes, hidden))
    x = g.node("Gemm", [x, w, g.const("head.bias", g.rng.normal(0, 0.02, classes))], "logits",
               transB=1)
    return g.model("vit", {"input": [batch, 3, size, size]}, x, [batch, classes])


def vit_tiny(**kwargs) -> onnx.ModelProto:
    """A small ViT for tests: 32x32 images, 8x8 patches, 2 layers of width 64."""
    defaults = dict(size=32, patch=8, hidden=64, layers=2, heads=2, classes=10)
    return vit(**{**defaults, **kwargs})


def gpt2_block(batch: int = 1, seq: int = 64, hidden: int = 768, heads: int = 12,
               layers: int = 1, seed: int = 0) -> onnx.ModelProto:
    """GPT-2 transformer block(s): pre-norm, causal attention (additive -1e4 mask), tanh GELU.

    Input ``hidden_states`` [batch, seq, hidden]; output ``output`` (before the final norm).
    """
    g = _ZooGraph(seed)
    x = "hidden_states"
    for i in range(layers):
        x = g.transformer_layer(x, f"h.{i}", hidden, heads, 4 * hidden, norm="pre", gelu="tanh",
                                eps=1e-5, causal_seq=seq)
    x = g.node("Identity", [x], "output")
    return g.model("gpt2_block", {"hidden_states": [batch, seq, hidden]}, x,
                   [batch, seq, hidden])


def _small_cnn(**kw):
    from .builders import small_cnn

    return small_cnn(**kw)


def _mlp(**kw):
    from .builders import mlp

    return mlp(**kw)


# Names for ``nm-tvmc compile zoo:NAME`` (default sizes; call the builders for others).
BUILDERS = {
    "small_cnn": _small_cnn,
    "mlp": _mlp,
    "resnet18": resnet18,
    "resnet50": resnet50,
    "mobilenet_v2": mobilenet_v2,
    "bert_tiny": bert_tiny,
    "bert_base": bert_base,
    "vit": vit,
    "vit_tiny": vit_tiny,
    "gpt2_block": gpt2_block,
}
