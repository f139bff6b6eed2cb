"""GEMM tiling (the LOOP_GEMM tile search and its emission) and the layers mapped onto it:
conv2d (im2col), matmul, avg_pool2d, and mean / sum over trailing axes."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from itertools import product

import numpy as np

from ..cost_model import GemmTiles, loop_gemm_estimate, loop_gemm_fits
from ..hardware import HardwareConfig
from ..isa import ELEM_BYTES, MachineParams, Op, ProgramBuilder
from .layer import (AcceleratorCall, CodegenError, Param, _ceil, _Layer, _nbytes, _split,
                    _trailing_reduction)
from .movement import Copy, _emit_staged_copies, staging_rows


RELU_TABLE = np.array([[-np.inf, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=np.float32)


# ----------------------------------------------------------------------------- GEMM tiling
def gemm_tile_candidates(hw: HardwareConfig | MachineParams, m: int, k: int, n: int):
    """Every LOOP_GEMM tiling codegen considers that fits double-buffered: tile_k and tile_n
    powers of two (up to the DIM blocks of K and N); tile_m powers of two times DIM, m itself,
    and the largest tile the buffers hold (as is, and split evenly over the tiles it needs)."""
    d = hw.dim
    kb, nb = _ceil(k, d), _ceil(n, d)
    pow2 = lambda limit: sorted({min(limit, 1 << i) for i in range(limit.bit_length() + 1)})
    m_pow2 = {min(m, d * t) for t in pow2(_ceil(m, d))} | {m}
    for tk, tn in product(pow2(kb), pow2(nb)):
        tm_max = min((hw.acc_rows - tn) // (2 * tn), hw.sp_rows // 2 // tk - d * tn, m)
        m_cands = set(m_pow2)
        if tm_max >= 1:
            m_cands |= {tm_max, _ceil(m, _ceil(m, tm_max))}
        for tm in sorted(m_cands):
            tiles = GemmTiles(tm, tk, tn)
            if loop_gemm_fits(hw, tiles):
                yield tiles


# How many candidates of lowest static estimate the simulator's timing pass ranks. 1 (the
# default) is the static choice alone. Ranking 8 with simulated LOOP_GEMMs
# (benchmarks/tile_choice.py) saves 1-19% of cycles on most zoo models but costs 2% on
# MobileNetV2 in bf16, whose depthwise layers are bound by the im2col copies a lone LOOP_GEMM
# does not see; so it is a tuning option (timing the whole layer per candidate), not the default.
SHORTLIST = 1
PROBE_REPEAT = 4


def choose_gemm_tiles(hw: HardwareConfig, m: int, k: int, n: int, has_d: bool = False,
                      repeat: int = 1) -> GemmTiles:
    """The tiling the simulator times fastest among the SHORTLIST candidates of lowest static
    estimate (nm_tvm.target.cost_model); ties go to the lower estimate, then candidate order.

    ``repeat``: how many LOOP_GEMMs of this shape the layer issues back to back (groups of a
    grouped convolution, a batched matmul); they overlap one another's pipeline start and end,
    so the candidates are timed as up to PROBE_REPEAT such LOOP_GEMMs in a row."""
    return _choose_gemm_tiles(hw.machine(), m, k, n, has_d, min(int(repeat), PROBE_REPEAT))


@lru_cache(maxsize=4096)
def _choose_gemm_tiles(machine: MachineParams, m: int, k: int, n: int, has_d: bool,
                       repeat: int) -> GemmTiles:
    ranked = []
    for order, tiles in enumerate(gemm_tile_candidates(machine, m, k, n)):
        est = loop_gemm_estimate(machine, m, k, n, tiles, has_d)
        ranked.append(((est.cycles, est.steps, order), tiles))
    if not ranked:
        d = machine.dim
        raise CodegenError(
            f"no GEMM tiling fits: scratchpad has {machine.sp_rows} rows and accumulator "
            f"{machine.acc_rows} rows of {d} elements; at least {4 * d} and {3 * d} are needed")
    ranked.sort(key=lambda item: item[0])
    shortlist = ranked[:SHORTLIST]
    if len(shortlist) == 1:
        return shortlist[0][1]
    return min(shortlist, key=lambda item: (simulated_loop_gemm_cycles(
        machine, m, k, n, item[1], has_d, repeat), item[0]))[1]


def simulated_loop_gemm_cycles(machine: MachineParams, m: int, k: int, n: int, tiles: GemmTiles,
                               has_d: bool = False, repeat: int = 1) -> int:
    """Cycles of ``repeat`` LOOP_GEMMs over contiguous A, B, C (and D) in the simulator's timing
    pass (``simulator.estimate``: no memory is touched)."""
    from .. import simulator

    b = ProgramBuilder(machine)
    ra, rb, rc = (b.region(rows * cols * ELEM_BYTES) for rows, cols in ((m, k), (k, n), (m, n)))
    rd = b.region(m * n * ELEM_BYTES) if has_d else 0
    for _ in range(repeat):
        b.emit(Op.LOOP_GEMM, a_addr=ra, a_row_stride=k * ELEM_BYTES, a_col_stride=ELEM_BYTES,
               b_addr=rb, b_row_stride=n * ELEM_BYTES, b_col_stride=ELEM_BYTES,
               c_addr=rc, c_row_stride=n * ELEM_BYTES, c_col_stride=ELEM_BYTES,
               d_addr=rd, d_row_stride=n * ELEM_BYTES if has_d else 0,
               d_col_stride=ELEM_BYTES if has_d else 0, M=m, K=k, N=n, tile_m=tiles.tile_m,
               tile_k=tiles.tile_k, tile_n=tiles.tile_n, sp_base=0, acc_base=0, has_d=int(has_d))
    return simulator.estimate(b.encode())["cycles"]


@dataclass
class Matrix:
    """A DRAM matrix view: element (i, j) at ``addr + i * row_stride + j * col_stride`` bytes."""

    addr: int
    row_stride: int
    col_stride: int


def _emit_loop_gemm(layer: _Layer, a: Matrix, b: Matrix, c: Matrix, m: int, k: int, n: int,
                    bias_addr: int | None = None, d: Matrix | None = None,
                    act_segments: int = 0, repeat: int = 1) -> None:
    tiles = choose_gemm_tiles(layer.hw, m, k, n, has_d=d is not None, repeat=repeat)
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
                        d=d, act_segments=act, repeat=n_img * groups)
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
                            act_segments=act, repeat=int(np.prod(batch)))
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
