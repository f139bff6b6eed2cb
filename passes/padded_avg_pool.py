"""Padded average pooling -> a depthwise convolution with constant 1/(kh*kw) weights.

The accelerator's pooling program reads unpadded windows; a convolution handles padding (its
im2col gathers write the zeros). ``count_include_pad=False`` divides each output by the number
of real (unpadded) inputs in its window: the convolution's result is then scaled by the
constant ``kh*kw / count`` per output position, an elementwise multiply.
"""
from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax.dpl import is_op, wildcard

from ._rewrite import rewrite_functions


def _valid_counts(size: int, pad0: int, kernel: int, stride: int, dilation: int, out: int):
    """Per output index: how many of the window's taps fall inside the unpadded input."""
    taps = np.arange(out)[:, None] * stride - pad0 + np.arange(kernel)[None, :] * dilation
    return ((taps >= 0) & (taps < size)).sum(axis=1)


def _rule():
    data = wildcard()
    pattern = is_op("relax.nn.avg_pool2d")(data)

    def rewrite(expr, m):
        attrs = expr.attrs
        pad = [int(p) for p in attrs.padding]  # top, left, bottom, right
        if (not any(pad) or attrs.layout != "NCHW" or attrs.out_layout != "NCHW"
                or bool(attrs.ceil_mode)):
            return expr
        x = m[data]
        n, c, h, w = (int(d) for d in x.ty.shape)
        kh, kw = (int(v) for v in attrs.pool_size)
        (sh, sw), (dh, dw) = ([int(v) for v in attrs.strides], [int(v) for v in attrs.dilation])
        weight = relax.const(np.full((c, 1, kh, kw), 1.0 / (kh * kw), np.float32))
        y = relax.op.nn.conv2d(x, weight, strides=(sh, sw), padding=pad, dilation=(dh, dw),
                               groups=c)
        if bool(attrs.count_include_pad):
            return y
        oh, ow = [int(d) for d in expr.ty.shape][2:]
        count = np.outer(_valid_counts(h, pad[0], kh, sh, dh, oh),
                         _valid_counts(w, pad[1], kw, sw, dw, ow))
        scale = (kh * kw / np.maximum(count, 1)).astype(np.float32).reshape(1, 1, oh, ow)
        return relax.op.multiply(y, relax.const(scale))

    return pattern, rewrite


@tvm.transform.module_pass(opt_level=0, name="nm.PaddedAvgPoolAsConv")
class PaddedAvgPoolAsConv:
    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        return rewrite_functions(mod, *_rule())
