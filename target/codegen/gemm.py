"""GEMM tiling (the LOOP_GEMM tile search and its emission) and the layers mapped onto it:
conv2d (im2col), matmul, avg_pool2d, and mean / sum over trailing axes."""
from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import numpy as np

from ..hardware import HardwareConfig
from ..isa import ELEM_BYTES, Op
from .layer import (AcceleratorCall, CodegenError, Param, _ceil, _Layer, _nbytes, _split,
                    _trailing_reduction)
from .movement import Copy, _emit_staged_copies, staging_rows


RELU_TABLE = np.array([[-np.inf, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=np.float32)


# ----------------------------------------------------------------------------- GEMM tiling
@dataclass(frozen=True)
class GemmTiles:
    tile_m: int
    tile_k: int
    tile_n: int


def choose_gemm_tiles(hw: HardwareConfig, m: int, k: int, n: int, has_d: bool = False) -> GemmTiles:
    """Pick LOOP_GEMM tile sizes that fit double-buffered and minimise modelled cycles.

    Scratchpad: 2 * (tile_k * tile_m + tile_k * DIM * tile_n) rows; accumulator:
    2 * tile_m * tile_n + tile_n rows (docs/ISA.md). The estimate follows the LOOP_GEMM
    expansion: per step, ``tile_k`` A loads and ``tile_n`` B loads on the load engine and
    ``tile_k * tile_n`` GEMMs on the compute engine; per output tile ``tile_n`` stores. Double
    buffering overlaps the engines, so the slowest engine's total is the cost. GEMM costs follow
    docs/ISA.md: back-to-back GEMMs chain (weight-stationary ``m + max(0, k - m_prev)``,
    output-stationary ``ceil(m / DIM) * max(k, DIM)``); the fill / drain (and the first
    weight preload) is paid once per chain, taken here as once per output tile.
    """
    d, lat, bw = hw.dim, hw.dram_latency, hw.dram_bw
    kb, nb = _ceil(k, d), _ceil(n, d)
    dma = lambda elems: lat + _ceil(elems * ELEM_BYTES, bw)
    pow2 = lambda limit: sorted({min(limit, 1 << i) for i in range(limit.bit_length() + 1)})
    m_pow2 = {min(m, d * t) for t in pow2(_ceil(m, d))} | {m}
    os_flow = hw.dataflow == "output_stationary"

    def gemm(rows: int) -> int:  # one chained GEMM of `rows` rows and a full DIM block of K
        return _ceil(rows, d) * d if os_flow else rows + max(0, d - rows)

    best, best_cost = None, None
    for tk, tn in product(pow2(kb), pow2(nb)):
        # M tile candidates: powers of two times DIM, and the largest tile the buffers hold
        # (as is, and split evenly over the tiles it needs).
        tm_max = min((hw.acc_rows - tn) // (2 * tn), hw.sp_rows // 2 // tk - d * tn, m)
        m_cands = set(m_pow2)
        if tm_max >= 1:
            m_cands |= {tm_max, _ceil(m, _ceil(m, tm_max))}
        for tm in sorted(m_cands):
            if 2 * (tk * tm + tk * d * tn) > hw.sp_rows or 2 * tm * tn + tn > hw.acc_rows:
                continue
            full, rem = divmod(m, tm)
            m_tiles = [(full, tm)] + ([(1, rem)] if rem else [])
            n_tiles, k_steps = _ceil(nb, tn), _ceil(kb, tk)
            tiles = n_tiles * (full + (rem > 0))
            steps = tiles * k_steps
            load = compute = store = 0
            for count, rows in m_tiles:
                per = count * n_tiles
                load += per * k_steps * (tk * dma(rows * d) + tn * dma(tk * d * d))
                load += per * tn * dma(rows * d) if has_d else 0
                compute += per * k_steps * tk * tn * gemm(rows)
                store += per * tn * dma(rows * d)
            compute += tiles * (2 * d - 2 if os_flow else 3 * d - 2)
            cost = (max(load, compute, store), steps)
            if best_cost is None or cost < best_cost:
                best, best_cost = GemmTiles(tm, tk, tn), cost
    if best is None:
        raise CodegenError(
            f"no GEMM tiling fits: scratchpad has {hw.sp_rows} rows and accumulator "
            f"{hw.acc_rows} rows of {d} elements; at least {4 * d} and {3 * d} are needed")
    return best


@dataclass
class Matrix:
    """A DRAM matrix view: element (i, j) at ``addr + i * row_stride + j * col_stride`` bytes."""

    addr: int
    row_stride: int
    col_stride: int


def _emit_loop_gemm(layer: _Layer, a: Matrix, b: Matrix, c: Matrix, m: int, k: int, n: int,
                    bias_addr: int | None = None, d: Matrix | None = None,
                    act_segments: int = 0) -> None:
    tiles = choose_gemm_tiles(layer.hw, m, k, n, has_d=d is not None)
    d = d or Matrix(0, 0, 0)
    layer.b.emit(
        Op.LOOP_GEMM,
        a_addr=a.addr, a_row_stride=a.row_stride, a_col_stride=a.col_stride,
        b_addr=b.addr, b_row_stride=b.row_stride, b_col_stride=b.col_stride,
        c_addr=c.addr, c_row_stride=c.row_stride, c_col_stride=c.col_stride,
        d_addr=d.addr, d_row_stride=d.row_stride, d_col_stride=d.col_stride,
        bias_addr=bias_addr or 0, M=m, K=k, N=n,
        tile_m=tiles.tile_m, tile_k=tiles.tile_k, tile_n=tiles.tile_n,
        act_table=0, act_segments=act_segments, sp_base=0, acc_base=0,
        has_d=int(d.row_stride != 0 or d.col_stride != 0), has_bias=int(bias_addr is not None),
        has_act=int(act_segments > 0))


def _load_relu_table(layer: _Layer) -> int:
    addr = layer.const(RELU_TABLE)
    layer.b.emit(Op.LOAD_PWL, table_base=0, dram_addr=addr, n_segments=len(RELU_TABLE))
    return len(RELU_TABLE)


# ---------------------------------------------------------------------------- GEMM layers
@dataclass
class Conv2dAttrs:
    strides: tuple
    padding: tuple  # top, left, bottom, right
    dilation: tuple


def conv2d_program(hw: HardwareConfig, layer_id: int, x_shape, weight: np.ndarray,
                   attrs: Conv2dAttrs, bias: np.ndarray | None = None,
                   residual: Param | None = None, relu: bool = False,
                   groups: int = 1) -> AcceleratorCall:
    """NCHW conv2d as im2col DMA gathers + one LOOP_GEMM per (image, group).

    The im2col matrix has rows (oh, ow) and columns (c, kh, kw), so group ``g``'s operand is
    the contiguous column block of its channels: ``[P, Cg*KH*KW] @ [Cg*KH*KW, Og]``
    (depthwise: ``Cg = 1``, K = KH*KW per channel), all from one gather pass. A 1x1,
    stride-1, unpadded convolution reads its input in place (no im2col)."""
    n_img, c_in, h, w = (int(v) for v in x_shape)
    c_out, c_g, kh_, kw_ = weight.shape
    if c_in % groups or c_out % groups or c_g != c_in // groups:
        raise CodegenError(f"conv2d weight {weight.shape} does not fit {c_in} input channels "
                           f"in {groups} groups")
    o_g = c_out // groups
    (sh, sw), (dh, dw) = attrs.strides, attrs.dilation
    pt, pl, pb, pr = attrs.padding
    oh = (h + pt + pb - dh * (kh_ - 1) - 1) // sh + 1
    ow = (w + pl + pr - dw * (kw_ - 1) - 1) // sw + 1
    p, kk = oh * ow, kh_ * kw_
    k_all, k_g = c_in * kk, c_g * kk
    out_shape = (n_img, c_out, oh, ow)
    layer = _Layer(hw, layer_id)
    x = layer.input(Param(0), _nbytes(x_shape))
    # Group g's weights [Cg*KH*KW, Og], rows ordered (c, kh, kw) like the im2col columns.
    wmat = layer.const(weight.reshape(groups, o_g, k_g).transpose(0, 2, 1))
    bias_addr = layer.const(bias) if bias is not None else None
    res = layer.input(residual, _nbytes(out_shape)) if residual is not None else None
    direct = (kh_, kw_, sh, sw, pt, pl, pb, pr) == (1, 1, 1, 1, 0, 0, 0, 0)
    if not direct:
        cols = layer.scratch(n_img * p * k_all * ELEM_BYTES)
    act = _load_relu_table(layer) if relu else 0
    out = layer.output(out_shape)
    if not direct:
        _emit_staged_copies(layer, _im2col_copies(hw, x, cols, (n_img, c_in, h, w), (oh, ow),
                                                  (kh_, kw_), attrs))
    for i, g in product(range(n_img), range(groups)):
        if direct:  # A[p, c] = x[i, g*Cg + c, p], read in place
            a = Matrix(x + (i * c_in + g * c_g) * p * 4, 4, p * 4)
        else:
            a = Matrix(cols + (i * p * k_all + g * k_g) * 4, k_all * 4, 4)
        first_out = (i * c_out + g * o_g) * p * 4  # C[p, o] -> out[i, g*Og + o, p]
        d = Matrix(res + first_out, 4, p * 4) if res is not None else None
        _emit_loop_gemm(layer, a, Matrix(wmat + g * k_g * o_g * 4, o_g * 4, 4),
                        Matrix(out + first_out, 4, p * 4), p, k_g, o_g,
                        bias_addr=bias_addr + g * o_g * 4 if bias_addr is not None else None,
                        d=d, act_segments=act)
    return layer.finish(out_shape, macs=n_img * groups * p * k_g * o_g, im2col=not direct)


def _im2col_copies(hw, x, cols, x_shape, out_hw, kernel, attrs) -> list[Copy]:
    """Gathers filling cols[(i, oh, ow), (c, kh, kw)], DIM channels per copy; padded entries
    stay zero (scratch DRAM starts zeroed)."""
    n_img, c_in, h, w = x_shape
    oh_, ow_ = out_hw
    kh_, kw_ = kernel
    (sh, sw), (dh, dw) = attrs.strides, attrs.dilation
    pt, pl = attrs.padding[0], attrs.padding[1]
    kk = kh_ * kw_
    k_all, half, d = c_in * kk, staging_rows(hw), hw.dim
    copies = []
    for i, oh, ky, kx in product(range(n_img), range(oh_), range(kh_), range(kw_)):
        ih = oh * sh + ky * dh - pt
        if not 0 <= ih < h:
            continue
        # Output columns whose input column ow*sw + kx*dw - pl lies inside the image.
        lo = max(0, _ceil(pl - kx * dw, sw))
        hi = min(ow_, (w - 1 + pl - kx * dw) // sw + 1)
        for (c0, c1), (o0, o1) in product(_split(0, c_in, d), _split(lo, hi, half)):
            iw = o0 * sw + kx * dw - pl
            copies.append(Copy(
                src=x + ((i * c_in + c0) * h * w + ih * w + iw) * 4,
                src_row_stride=sw * 4, src_col_stride=h * w * 4,
                dst=cols + ((i * oh_ * ow_ + oh * ow_ + o0) * k_all + c0 * kk + ky * kw_ + kx) * 4,
                dst_row_stride=k_all * 4, dst_col_stride=kk * 4, rows=o1 - o0, cols=c1 - c0))
    return copies


def matmul_program(hw: HardwareConfig, layer_id: int, a_shape, b_shape,
                   weight: np.ndarray | None = None, bias: np.ndarray | None = None,
                   residual: Param | None = None, relu: bool = False,
                   a_operand: Param | np.ndarray | None = None,
                   b_param: Param | None = None) -> AcceleratorCall:
    """``A[..., M, K] @ B[..., K, N]`` (numpy matmul semantics); A and B each a constant or a
    tensor: ``a_operand`` is A's parameter or value (default ``Param(0)``), ``weight`` B's value
    or else ``b_param`` its parameter (default ``Param(1)``; the same parameter as A for x @ x)."""
    a_shape, b_shape = tuple(int(v) for v in a_shape), tuple(int(v) for v in b_shape)
    a2 = a_shape if len(a_shape) > 1 else (1,) + a_shape
    b2 = b_shape if len(b_shape) > 1 else b_shape + (1,)
    m, k = a2[-2:]
    k2, n = b2[-2:]
    if k != k2:
        raise CodegenError(f"matmul inner dimensions differ: {a_shape} @ {b_shape}")
    batch = np.broadcast_shapes(a2[:-2], b2[:-2])
    out_shape = batch + (m, n)
    if len(a_shape) == 1:
        out_shape = out_shape[:-2] + (n,)
    if len(b_shape) == 1:
        out_shape = out_shape[:-1]
    layer = _Layer(hw, layer_id)
    a = (layer.const(a_operand) if isinstance(a_operand, np.ndarray)
         else layer.input(a_operand or Param(0), _nbytes(a_shape)))
    b = (layer.const(weight) if weight is not None
         else layer.input(b_param or Param(1), _nbytes(b_shape)))
    bias_addr = layer.const(np.broadcast_to(bias, (n,))) if bias is not None else None
    res = layer.input(residual, _nbytes(out_shape)) if residual is not None else None
    act = _load_relu_table(layer) if relu else 0
    out = layer.output(out_shape)
    if len(b2) == 2:  # shared B: fold the batch of A into M
        rows = int(np.prod(a2[:-1]))
        d = Matrix(res, n * 4, 4) if res is not None else None
        _emit_loop_gemm(layer, Matrix(a, k * 4, 4), Matrix(b, n * 4, 4), Matrix(out, n * 4, 4),
                        rows, k, n, bias_addr=bias_addr, d=d, act_segments=act)
    else:
        a_bs, b_bs = _batch_strides(a2[:-2], batch, m * k), _batch_strides(b2[:-2], batch, k * n)
        for idx in np.ndindex(*batch):
            ao = sum(i * s for i, s in zip(idx, a_bs)) * 4
            bo = sum(i * s for i, s in zip(idx, b_bs)) * 4
            co = int(np.ravel_multi_index(idx, batch)) * m * n * 4 if batch else 0
            d = Matrix(res + co, n * 4, 4) if res is not None else None
            _emit_loop_gemm(layer, Matrix(a + ao, k * 4, 4), Matrix(b + bo, n * 4, 4),
                            Matrix(out + co, n * 4, 4), m, k, n, bias_addr=bias_addr, d=d,
                            act_segments=act)
    batch_count = int(np.prod(batch)) if batch else 1
    return layer.finish(out_shape, macs=batch_count * m * k * n)


def _batch_strides(shape, batch, matrix_elems) -> list[int]:
    """Element strides of a (broadcast) batch shape, right-aligned to ``batch``."""
    shape = (1,) * (len(batch) - len(shape)) + tuple(shape)
    strides, acc = [], matrix_elems
    for dim in reversed(shape):
        strides.append(acc if dim != 1 else 0)
        acc *= dim
    return list(reversed(strides))


def avg_pool2d_program(hw: HardwareConfig, layer_id: int, x_shape, pool, strides,
                       dilation) -> AcceleratorCall:
    """Unpadded average pooling as a GEMM: per-channel window gathers times ones/(kh*kw)."""
    n_img, c_in, h, w = (int(v) for v in x_shape)
    kh_, kw_ = pool
    (sh, sw), (dh, dw) = strides, dilation
    oh = (h - dh * (kh_ - 1) - 1) // sh + 1
    ow = (w - dw * (kw_ - 1) - 1) // sw + 1
    if kw_ > hw.dim:
        raise CodegenError(f"avg_pool2d window width {kw_} exceeds the array width {hw.dim}")
    k, p = kh_ * kw_, oh * ow
    out_shape = (n_img, c_in, oh, ow)
    layer = _Layer(hw, layer_id)
    x = layer.input(Param(0), _nbytes(x_shape))
    ones = layer.const(np.full((k, 1), 1.0 / k, dtype=np.float32))
    cols = layer.scratch(n_img * c_in * p * k * ELEM_BYTES)
    out = layer.output(out_shape)
    copies = []
    for img, oy, ky in product(range(n_img * c_in), range(oh), range(kh_)):
        for o0, o1 in _split(0, ow, staging_rows(hw)):
            copies.append(Copy(
                src=x + (img * h * w + (oy * sh + ky * dh) * w + o0 * sw) * 4,
                src_row_stride=sw * 4, src_col_stride=dw * 4,
                dst=cols + ((img * p + oy * ow + o0) * k + ky * kw_) * 4,
                dst_row_stride=k * 4, dst_col_stride=4, rows=o1 - o0, cols=kw_))
    _emit_staged_copies(layer, copies)
    rows = n_img * c_in * p
    _emit_loop_gemm(layer, Matrix(cols, k * 4, 4), Matrix(ones, 4, 4), Matrix(out, 4, 4),
                    rows, k, 1)
    return layer.finish(out_shape, macs=rows * k)


def mean_program(hw: HardwareConfig, layer_id: int, x_shape, axes, keepdims,
                 average: bool = True) -> AcceleratorCall:
    """Mean (GlobalAveragePool) or sum over trailing axes as ``X[R, L] @ ones(L, 1) [/ L]``."""
    r, length, out_shape = _trailing_reduction("mean", x_shape, axes, keepdims)
    layer = _Layer(hw, layer_id)
    x = layer.input(Param(0), _nbytes(x_shape))
    ones = layer.const(np.full((length, 1), 1.0 / length if average else 1.0, dtype=np.float32))
    out = layer.output(out_shape)
    _emit_loop_gemm(layer, Matrix(x, length * 4, 4), Matrix(ones, 4, 4), Matrix(out, 4, 4),
                    r, length, 1)
    return layer.finish(out_shape, macs=r * length)
