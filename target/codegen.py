"""Codegen: one accelerator layer (a matched composite) -> one tiled instruction program.

Each ``*_program`` function receives shapes, attributes and constant operands of a layer and
returns an :class:`AcceleratorCall`: the encoded program (header + regions + instructions) and
the tensors to pass, in region order. The program runs in the C++ simulator when the compiled
Relax VM calls ``nm_accel.run``. Tiling is chosen here against the target's memories; the
simulator rejects anything that does not fit, so a tiling bug cannot pass silently.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import product

import numpy as np

from .hardware import HardwareConfig
from .isa import ELEM_BYTES, Mem, Op, ProgramBuilder, Queue, RegionKind, VecOp, bit

RELU_TABLE = np.array([[-np.inf, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=np.float32)


class CodegenError(ValueError):
    """A layer cannot be mapped onto the target (names the layer and the reason)."""


@dataclass
class Param:
    """A tensor that comes from the Relax graph (index into the composite's parameters)."""

    index: int


@dataclass
class AcceleratorCall:
    program: np.ndarray
    operands: list  # Param or np.ndarray (a constant), in argument-region order
    out_shape: tuple
    macs: int
    notes: dict = field(default_factory=dict)


class _Layer:
    """Region bookkeeping shared by all layer kinds."""

    def __init__(self, hw: HardwareConfig, layer_id: int):
        self.hw = hw
        self.b = ProgramBuilder(hw.machine(), layer_id)
        self.operands: list = []
        self._has_output = False

    def input(self, operand, nbytes: int) -> int:
        if self._has_output:
            raise CodegenError("internal: input region declared after the output region")
        self.operands.append(operand)
        return self.b.region(nbytes, RegionKind.ARGUMENT)

    def const(self, value: np.ndarray) -> int:
        value = np.ascontiguousarray(value, dtype=np.float32)
        return self.input(value, value.nbytes)

    def scratch(self, nbytes: int) -> int:
        return self.b.region(nbytes, RegionKind.SCRATCH)

    def output(self, shape) -> int:
        """The output region; must be declared last (call_dps_packed passes it last)."""
        self._has_output = True
        return self.b.region(_nbytes(shape), RegionKind.ARGUMENT)

    def finish(self, out_shape, macs: int, **notes) -> AcceleratorCall:
        used = self.b._next_base
        if used > self.hw.dram_bytes:
            raise CodegenError(
                f"layer needs {used / 2**20:.1f} MiB of DRAM but the target has "
                f"{self.hw.dram_mib} MiB (memories.dram_mib)")
        return AcceleratorCall(self.b.encode(), self.operands, tuple(out_shape), macs, notes)


def _nbytes(shape) -> int:
    return int(np.prod(shape, dtype=np.int64)) * ELEM_BYTES


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


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


# ----------------------------------------------------------------- DMA staging (load -> store)
@dataclass
class Copy:
    """One 2-D block copied DRAM -> scratchpad -> DRAM (im2col gathers, transposes)."""

    src: int
    src_row_stride: int
    src_col_stride: int
    dst: int
    dst_row_stride: int
    dst_col_stride: int
    rows: int
    cols: int


def staging_rows(hw: HardwareConfig) -> int:
    """Rows per staging buffer (two buffers alternate so loads overlap stores)."""
    return hw.sp_rows // 2


def _emit_staged_copies(layer: _Layer, copies: list[Copy], handoff: bool = False) -> bool:
    """Double-buffered LOAD/STORE pairs; tokens: load->store 'ready', store->load 'free'.

    Stores signal the load queue only for buffers a later copy reuses, so no token is left
    over; with ``handoff`` the last store also signals, and the caller's next load must wait
    for it (DRAM written here and read next is then ordered in time too). Returns whether a
    hand-off token is pending.
    """
    half = staging_rows(layer.hw)
    n = len(copies)
    for j, cp in enumerate(copies):
        if cp.rows > half or cp.cols > layer.hw.dim:
            raise CodegenError(f"internal: copy block {cp.rows}x{cp.cols} exceeds staging buffer")
        row = (j % 2) * half
        frees = j + 2 < n or (handoff and j == n - 1)
        layer.b.emit(Op.LOAD, wait=bit(Queue.STORE) if j >= 2 else 0, signal=bit(Queue.STORE),
                     dst_mem=Mem.SCRATCHPAD, dst_row=row, dram_addr=cp.src, rows=cp.rows,
                     cols=cp.cols, row_stride=cp.src_row_stride, col_stride=cp.src_col_stride)
        layer.b.emit(Op.STORE, wait=bit(Queue.LOAD), signal=bit(Queue.LOAD) if frees else 0,
                     src_mem=Mem.SCRATCHPAD, src_row=row, dram_addr=cp.dst, rows=cp.rows,
                     cols=cp.cols, row_stride=cp.dst_row_stride, col_stride=cp.dst_col_stride)
    return handoff and n > 0


def _split(start: int, stop: int, step: int):
    for lo in range(start, stop, step):
        yield lo, min(stop, lo + step)


# ------------------------------------------------------------------------------- layer kinds
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
                   residual: Param | None = None, relu: bool = False) -> AcceleratorCall:
    """``A[..., M, K] @ B[..., K, N]`` (numpy matmul semantics); B a constant or a tensor."""
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
    a = layer.input(Param(0), _nbytes(a_shape))
    b = layer.const(weight) if weight is not None else layer.input(Param(1), _nbytes(b_shape))
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


NEG_INF_ROW = np.full(1, -np.inf, dtype=np.float32)


def max_pool2d_program(hw: HardwareConfig, layer_id: int, x_shape, pool, strides, padding,
                       dilation) -> AcceleratorCall:
    """Max pooling as VEC max over the window's strided views of the (padded) input.

    With padding, the input is first copied by DMA into a scratch image filled with -inf, so
    every window view is a plain 2-D strided load. Per output tile (one image, a block of
    output rows and up to DIM output columns) the first view is loaded into the running
    maximum, each further view into an alternating buffer and folded in with VEC max."""
    n_img, c_in, h, w = (int(v) for v in x_shape)
    kh_, kw_ = pool
    (sh, sw), (dh, dw) = strides, dilation
    pt, pl, pb, pr = padding
    hp, wp = h + pt + pb, w + pl + pr
    oh = (hp - dh * (kh_ - 1) - 1) // sh + 1
    ow = (wp - dw * (kw_ - 1) - 1) // sw + 1
    images, d = n_img * c_in, hw.dim
    out_shape = (n_img, c_in, oh, ow)
    layer = _Layer(hw, layer_id)
    x = layer.input(Param(0), _nbytes(x_shape))
    padded = any(padding)
    if padded:
        ninf = layer.const(NEG_INF_ROW)
        xp = layer.scratch(images * hp * wp * ELEM_BYTES)
    out = layer.output(out_shape)
    pending = False
    if padded:
        fill = _view_copies(hw, ninf, [0, 0, 0], xp, (images, hp, wp))
        half = staging_rows(hw)
        interior = [Copy(src=x + (img * h * w + r0 * w + c0) * 4, src_row_stride=w * 4,
                         src_col_stride=4,
                         dst=xp + (img * hp * wp + (r0 + pt) * wp + c0 + pl) * 4,
                         dst_row_stride=wp * 4, dst_col_stride=4, rows=r1 - r0, cols=c1 - c0)
                    for img in range(images) for r0, r1 in _split(0, h, half)
                    for c0, c1 in _split(0, w, d)]
        pending = _emit_staged_copies(layer, fill + interior, handoff=True)
    src = xp if padded else x
    windows = [(ky, kx) for ky in range(kh_) for kx in range(kw_)]
    k = len(windows)
    tile_rows = max(1, min(oh, hw.acc_rows // 3))
    tiles = [(img, r0, r1, c0, c1) for img in range(images) for r0, r1 in _split(0, oh, tile_rows)
             for c0, c1 in _split(0, ow, d)]
    run, bufs = 0, (tile_rows, 2 * tile_rows)
    for t, (img, r0, r1, c0, c1) in enumerate(tiles):
        rows = r1 - r0
        def fold(j):  # running max = max(running max, view j)
            signal = bit(Queue.LOAD) if j + 2 <= k - 1 else 0
            if j == k - 1:
                signal |= bit(Queue.STORE)
            layer.b.emit(Op.VEC, wait=bit(Queue.LOAD), signal=signal, op=VecOp.MAX, dst_row=run,
                         a_row=run, b_row=bufs[(j - 1) % 2], rows=rows)

        # Program order keeps every token's push before its pop: L0 L1 L2 V1 L3 V2 ... V(k-1).
        for j, (ky, kx) in enumerate(windows):
            addr = src + (img * hp * wp + (r0 * sh + ky * dh) * wp + c0 * sw + kx * dw) * 4
            if j == 0:  # the running maximum starts as the first view
                wait = bit(Queue.STORE) if (t > 0 or pending) else 0
                signal = bit(Queue.STORE) if k == 1 else 0
                dst = run
            else:
                wait = bit(Queue.COMPUTE) if j >= 3 else 0
                signal = bit(Queue.COMPUTE)
                dst = bufs[(j - 1) % 2]
            layer.b.emit(Op.LOAD, wait=wait, signal=signal, dst_mem=Mem.ACCUMULATOR, dst_row=dst,
                         dram_addr=addr, rows=rows, cols=c1 - c0, row_stride=sh * wp * 4,
                         col_stride=sw * 4)
            if j >= 2:
                fold(j - 1)
        if k >= 2:
            fold(k - 1)
        more = t + 1 < len(tiles)
        layer.b.emit(Op.STORE, wait=bit(Queue.COMPUTE) if k > 1 else bit(Queue.LOAD),
                     signal=bit(Queue.LOAD) if more else 0,
                     src_mem=Mem.ACCUMULATOR, src_row=run,
                     dram_addr=out + (img * oh * ow + r0 * ow + c0) * 4, rows=rows, cols=c1 - c0,
                     row_stride=ow * 4, col_stride=4)
    return layer.finish(out_shape, macs=0)


def _trailing_reduction(what: str, x_shape, axes, keepdims: bool):
    """(rows R, reduced length L, output shape) of a reduction over trailing axes."""
    x_shape = tuple(int(v) for v in x_shape)
    rank = len(x_shape)
    axes = sorted(a % rank for a in axes)
    if axes != list(range(rank - len(axes), rank)):
        raise CodegenError(f"{what} over axes {axes} of a rank-{rank} tensor: only trailing axes")
    lead = x_shape[:rank - len(axes)]
    rows = int(np.prod(lead, dtype=np.int64))
    length = int(np.prod(x_shape[rank - len(axes):], dtype=np.int64))
    return rows, length, (lead + (1,) * len(axes) if keepdims else lead)


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


NEG_TABLE = np.array([[-np.inf, -1.0, 0.0]], dtype=np.float32)
VEC_OPS = {"add": VecOp.ADD, "subtract": VecOp.ADD, "multiply": VecOp.MUL,
           "maximum": VecOp.MAX, "minimum": VecOp.MAX}


def elementwise_program(hw: HardwareConfig, layer_id: int, shape, op: str | None,
                        operands: list, table: np.ndarray | None = None) -> AcceleratorCall:
    """``table(a <op> b)`` (or ``table(a)``) on accumulator rows: VEC for the op, PWL maps for
    the table and for negations (``a - b = a + neg(b)``, ``min(a, b) = -max(-a, -b)``).

    ``operands`` are ``(Param or constant array, shape)`` pairs broadcastable to ``shape``:
    constants are broadcast at compile time, tensors by strided DMA copies into scratch DRAM.
    The flattened output is processed in double-buffered tiles of DIM-wide rows.
    """
    shape = tuple(int(v) for v in shape)
    total, d = int(np.prod(shape, dtype=np.int64)), hw.dim
    if op is not None and op not in VEC_OPS:
        raise CodegenError(f"no vector op for '{op}'")
    layer = _Layer(hw, layer_id)
    sources, expand = [], []
    for value, vshape in operands:
        vshape = tuple(int(v) for v in vshape)
        if isinstance(value, Param):
            addr = layer.input(value, _nbytes(vshape))
            if vshape != shape:
                expand.append((addr, vshape, len(sources)))
            sources.append(addr)
        else:
            sources.append(layer.const(np.broadcast_to(np.asarray(value, np.float32), shape)))
    for addr, vshape, slot in expand:
        sources[slot] = layer.scratch(_nbytes(shape))
    tables = []  # (base, segments) per table kind
    base = 0
    for kind, values in (("post", table), ("neg", NEG_TABLE if op in ("subtract", "minimum") else None)):
        if values is None:
            tables.append(None)
            continue
        values = np.asarray(values, np.float32)
        if base + len(values) > hw.pwl_entries:
            raise CodegenError(f"PWL table of {len(values)} segments does not fit the target's "
                               f"{hw.pwl_entries} entries (memories.pwl_table_entries)")
        layer.b.emit(Op.LOAD_PWL, table_base=base, dram_addr=layer.const(values),
                     n_segments=len(values))
        tables.append((base, len(values)))
        base += len(values)
    post, neg = tables
    out = layer.output(shape)
    pending = False
    for addr, vshape, slot in expand:
        pending = _emit_staged_copies(layer, _view_copies(
            hw, addr, _broadcast_strides(vshape, shape), sources[slot], shape), handoff=True)
    n_ops = len(sources)
    tile_rows = max(1, min(_ceil(total, d), hw.acc_rows // (2 * n_ops)))
    for t, (e0, e1) in enumerate(_split(0, total, tile_rows * d)):
        buf = (t % 2) * tile_rows * n_ops
        rows = _ceil(e1 - e0, d)
        parts = _row_blocks(e0, e1, d)
        for j, src in enumerate(sources):
            for pi, (r0, nrows, ncols, elem) in enumerate(parts):
                first = j == 0 and pi == 0
                wait = bit(Queue.STORE) if first and (t >= 2 or (t == 0 and pending)) else 0
                last = j == n_ops - 1 and pi == len(parts) - 1
                layer.b.emit(Op.LOAD, wait=wait, signal=bit(Queue.COMPUTE) if last else 0,
                             dst_mem=Mem.ACCUMULATOR, dst_row=buf + j * tile_rows + r0,
                             dram_addr=src + elem * 4, rows=nrows, cols=ncols,
                             row_stride=d * 4, col_stride=4)
        a_row, b_row = buf, buf + tile_rows
        steps = []  # (opcode, operands) on the accumulator, in place into a_row
        pwl = lambda row, tab: (Op.PWL, dict(dst_row=row, src_row=row, rows=rows,
                                              table_base=tab[0], n_segments=tab[1]))
        if op == "minimum":
            steps.append(pwl(a_row, neg))
        if op in ("subtract", "minimum"):
            steps.append(pwl(b_row, neg))
        if op is not None:
            steps.append((Op.VEC, dict(op=VEC_OPS[op], dst_row=a_row, a_row=a_row,
                                       b_row=b_row, rows=rows)))
        if op == "minimum":
            steps.append(pwl(a_row, neg))
        if post is not None:
            steps.append(pwl(a_row, post))
        for si, (opcode, fields) in enumerate(steps):
            layer.b.emit(opcode, wait=bit(Queue.LOAD) if si == 0 else 0,
                         signal=bit(Queue.STORE) if si == len(steps) - 1 else 0, **fields)
        for pi, (r0, nrows, ncols, elem) in enumerate(parts):
            layer.b.emit(Op.STORE, wait=bit(Queue.COMPUTE) if pi == 0 else 0,
                         signal=bit(Queue.LOAD) if pi == len(parts) - 1 else 0,
                         src_mem=Mem.ACCUMULATOR, src_row=a_row + r0, dram_addr=out + elem * 4,
                         rows=nrows, cols=ncols, row_stride=d * 4, col_stride=4)
    return layer.finish(shape, macs=0)


def reduce_max_program(hw: HardwareConfig, layer_id: int, x_shape, axes,
                       keepdims: bool) -> AcceleratorCall:
    """Max over trailing axes: DIM reductions at once, each down a column of the accumulator
    (transposed load: one row per reduced element), combined by a tree of VEC max ops."""
    r, length, out_shape = _trailing_reduction("max", x_shape, axes, keepdims)
    d = hw.dim
    chunk = max(1, min(length, (hw.acc_rows - 2) // 2))  # rows of one double-buffered chunk
    layer = _Layer(hw, layer_id)
    x = layer.input(Param(0), _nbytes(x_shape))
    out = layer.output(out_shape)
    acc_row = 2 * chunk  # running maximum of the current column group
    step = 0
    for g, (c0, c1) in enumerate(_split(0, r, d)):
        chunks = list(_split(0, length, chunk))
        for ci, (l0, l1) in enumerate(chunks):
            buf = (step % 2) * chunk
            n = l1 - l0
            layer.b.emit(Op.LOAD, wait=bit(Queue.COMPUTE) if step >= 2 else 0,
                         signal=bit(Queue.COMPUTE), dst_mem=Mem.ACCUMULATOR, dst_row=buf,
                         dram_addr=x + (c0 * length + l0) * 4, rows=n, cols=c1 - c0,
                         row_stride=4, col_stride=length * 4)
            ops = []
            while n > 1:  # halve: rows [0, h) = max(rows [0, h), rows [n - h, n))
                h = n // 2
                ops.append(dict(op=VecOp.MAX, dst_row=buf, a_row=buf, b_row=buf + n - h, rows=h))
                n -= h
            if ci == 0:  # the first chunk's maximum starts the running maximum
                ops.append(dict(op=VecOp.MAX, dst_row=acc_row, a_row=buf, b_row=buf, rows=1))
            else:
                ops.append(dict(op=VecOp.MAX, dst_row=acc_row, a_row=acc_row, b_row=buf, rows=1))
            last = ci == len(chunks) - 1
            for oi, fields in enumerate(ops):
                signal = 0
                if oi == len(ops) - 1:
                    signal = bit(Queue.LOAD) | (bit(Queue.STORE) if last else 0)
                wait = 0
                if oi == 0:  # the running-max row is free once the previous group is stored
                    wait = bit(Queue.LOAD) | (bit(Queue.STORE) if g > 0 and ci == 0 else 0)
                layer.b.emit(Op.VEC, wait=wait, signal=signal, **fields)
            step += 1
        more = c1 < r
        layer.b.emit(Op.STORE, wait=bit(Queue.COMPUTE), signal=bit(Queue.COMPUTE) if more else 0,
                     src_mem=Mem.ACCUMULATOR, src_row=acc_row, dram_addr=out + c0 * 4, rows=1,
                     cols=c1 - c0, row_stride=0, col_stride=4)
    return layer.finish(out_shape, macs=0)


def _row_blocks(e0: int, e1: int, d: int):
    """Full DIM-wide rows of [e0, e1), then the ragged tail row: (row, rows, cols, element)."""
    full = (e1 - e0) // d
    blocks = [(0, full, d, e0)] if full else []
    if (e1 - e0) % d:
        blocks.append((full, 1, (e1 - e0) % d, e0 + full * d))
    return blocks


def _view_copies(hw: HardwareConfig, src: int, src_strides, dst: int, out_shape,
                 dst_strides=None) -> list[Copy]:
    """Copies that write ``out_shape`` at ``dst`` (dense, or with element ``dst_strides``) from
    element strides ``src_strides`` (one per output dim; 0 broadcasts): transposes, broadcasts,
    slices and concatenation are all such views."""
    out_shape = tuple(out_shape) if len(out_shape) else (1,)
    src_strides = list(src_strides) if len(src_strides) else [0]
    dst_strides = list(dst_strides) if dst_strides is not None else _dense_strides(out_shape)
    if len(out_shape) == 1:
        out_shape = (1,) + out_shape
        src_strides, dst_strides = [0] + src_strides, [0] + dst_strides
    r2, c2 = out_shape[-2:]
    copies = []
    for idx in np.ndindex(*out_shape[:-2]):
        src0 = sum(i * st for i, st in zip(idx, src_strides[:-2]))
        dst0 = sum(i * st for i, st in zip(idx, dst_strides[:-2]))
        for (r0, r1), (c0, c1) in product(_split(0, r2, staging_rows(hw)), _split(0, c2, hw.dim)):
            copies.append(Copy(
                src=src + (src0 + r0 * src_strides[-2] + c0 * src_strides[-1]) * 4,
                src_row_stride=src_strides[-2] * 4, src_col_stride=src_strides[-1] * 4,
                dst=dst + (dst0 + r0 * dst_strides[-2] + c0 * dst_strides[-1]) * 4,
                dst_row_stride=dst_strides[-2] * 4, dst_col_stride=dst_strides[-1] * 4,
                rows=r1 - r0, cols=c1 - c0))
    return copies


def _dense_strides(shape) -> list[int]:
    return [int(np.prod(shape[i + 1:], dtype=np.int64)) for i in range(len(shape))]


def _broadcast_strides(shape, out_shape) -> list[int]:
    """Element strides of ``shape`` read as ``out_shape`` (numpy broadcasting; 0 repeats)."""
    shape = (1,) * (len(out_shape) - len(shape)) + tuple(shape)
    dense = _dense_strides(shape)
    return [0 if d == 1 and o != 1 else st for d, o, st in zip(shape, out_shape, dense)]


def concat_program(hw: HardwareConfig, layer_id: int, operands: list, axis: int) -> AcceleratorCall:
    """Concatenation as DMA: each input (a tensor :class:`Param` or a constant array, with its
    shape) is copied into its slab of the output."""
    shapes = [tuple(int(v) for v in sh) for _, sh in operands]
    rank = len(shapes[0])
    axis %= rank
    out_shape = list(shapes[0])
    out_shape[axis] = sum(sh[axis] for sh in shapes)
    out_shape = tuple(out_shape)
    layer = _Layer(hw, layer_id)
    srcs = [layer.input(value, _nbytes(sh)) if isinstance(value, Param) else layer.const(value)
            for value, sh in operands]
    out = layer.output(out_shape)
    out_strides = _dense_strides(out_shape)
    copies, offset = [], 0
    for src, sh in zip(srcs, shapes):
        if int(np.prod(sh)):
            copies += _view_copies(hw, src, _dense_strides(sh), out + offset * out_strides[axis] * 4,
                                   sh, out_strides)
        offset += sh[axis]
    _emit_staged_copies(layer, copies)
    return layer.finish(out_shape, macs=0)


def strided_slice_program(hw: HardwareConfig, layer_id: int, x_shape, begin, end,
                          step) -> AcceleratorCall:
    """A slice (positive steps) as one strided DMA view of the input, stored densely."""
    x_shape = tuple(int(v) for v in x_shape)
    if any(st <= 0 for st in step):
        raise CodegenError(f"slice with step {list(step)}: only positive steps are supported")
    out_shape = tuple(max(0, _ceil(e - b, st)) for b, e, st in zip(begin, end, step))
    in_strides = _dense_strides(x_shape)
    layer = _Layer(hw, layer_id)
    x = layer.input(Param(0), _nbytes(x_shape))
    out = layer.output(out_shape)
    base = x + sum(b * s_ for b, s_ in zip(begin, in_strides)) * 4
    if int(np.prod(out_shape)):
        _emit_staged_copies(layer, _view_copies(
            hw, base, [s_ * st for s_, st in zip(in_strides, step)], out, out_shape))
    return layer.finish(out_shape, macs=0)


def transpose_program(hw: HardwareConfig, layer_id: int, x_shape, axes) -> AcceleratorCall:
    """``permute_dims`` as strided DMA: each output 2-D slab is gathered then stored densely."""
    x_shape = tuple(int(v) for v in x_shape)
    axes = [a % len(x_shape) for a in axes]
    out_shape = tuple(x_shape[a] for a in axes)
    in_strides = _dense_strides(x_shape)
    layer = _Layer(hw, layer_id)
    x = layer.input(Param(0), _nbytes(x_shape))
    out = layer.output(out_shape)
    _emit_staged_copies(layer, _view_copies(hw, x, [in_strides[a] for a in axes], out, out_shape))
    return layer.finish(out_shape, macs=0)


__all__ = ["AcceleratorCall", "CodegenError", "Conv2dAttrs", "GemmTiles", "Param",
           "avg_pool2d_program", "choose_gemm_tiles", "conv2d_program", "elementwise_program",
           "matmul_program", "max_pool2d_program", "mean_program", "reduce_max_program",
           "concat_program", "strided_slice_program", "transpose_program"]
