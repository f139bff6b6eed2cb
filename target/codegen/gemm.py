"""GEMM tiling (the LOOP_GEMM tile search and its emission) and the layers mapped onto it:
conv2d (im2col), matmul, avg_pool2d, and mean / sum over trailing axes."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from itertools import product

import numpy as np

from ..cost_model import GemmTiles, loop_gemm_estimate, loop_gemm_fits
from ..hardware import HardwareConfig
from ..isa import ELEM_BYTES, MachineParams, Mem, Op, ProgramBuilder
from .layer import (AcceleratorCall, CodegenError, Param, _ceil, _Layer, _nbytes, _split,
                    _trailing_reduction)
from .movement import Copy, _emit_staged_copies, _view_copies, staging_rows


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


class _Conv:
    """The geometry of one NCHW conv2d as im2col gathers + one LOOP_GEMM per (image, group),
    and its emission into a layer (shared by conv2d and the transposed convolution)."""

    def __init__(self, x_shape, weight: np.ndarray, attrs: Conv2dAttrs, groups: int):
        self.x_shape = n_img, c_in, h, w = tuple(int(v) for v in x_shape)
        c_out, c_g, kh_, kw_ = weight.shape
        if c_in % groups or c_out % groups or c_g != c_in // groups:
            raise CodegenError(f"conv2d weight {weight.shape} does not fit {c_in} input channels "
                               f"in {groups} groups")
        self.weight, self.attrs, self.groups = weight, attrs, groups
        self.o_g = c_out // groups
        (sh, sw), (dh, dw) = attrs.strides, attrs.dilation
        pt, pl, pb, pr = attrs.padding
        self.oh = (h + pt + pb - dh * (kh_ - 1) - 1) // sh + 1
        self.ow = (w + pl + pr - dw * (kw_ - 1) - 1) // sw + 1
        if self.oh < 1 or self.ow < 1:
            raise CodegenError(f"conv2d of {list(self.x_shape)} by {list(weight.shape)} has an "
                               f"empty output ({self.oh}x{self.ow})")
        self.p, self.kk = self.oh * self.ow, kh_ * kw_
        self.k_all, self.k_g = c_in * self.kk, c_g * self.kk
        self.c_out, self.kernel = c_out, (kh_, kw_)
        self.out_shape = (n_img, c_out, self.oh, self.ow)
        self.direct = (kh_, kw_, sh, sw, pt, pl, pb, pr) == (1, 1, 1, 1, 0, 0, 0, 0)
        self.macs = n_img * groups * self.p * self.k_g * self.o_g

    def constants(self, layer: _Layer, bias: np.ndarray | None):
        """Group g's weights [Cg*KH*KW, Og], rows ordered (c, kh, kw) like the im2col columns;
        the bias (or None)."""
        wmat = layer.const(self.weight.reshape(self.groups, self.o_g, self.k_g).transpose(0, 2, 1))
        return wmat, (layer.const(bias) if bias is not None else None)

    def scratch(self, layer: _Layer) -> int | None:
        if self.direct:
            return None
        return layer.scratch(self.x_shape[0] * self.p * self.k_all * ELEM_BYTES)

    def emit(self, layer: _Layer, x: int, cols: int | None, wmat: int, bias_addr: int | None,
             out: int, res: int | None, act: int, more_copies: list[Copy] = ()) -> None:
        """The im2col gathers (then ``more_copies``, in the same double-buffered stream) and
        the LOOP_GEMMs writing ``out`` (NCHW), accumulating onto ``res`` when given."""
        n_img, c_in, h, w = self.x_shape
        copies = [] if self.direct else _im2col_copies(
            layer.hw, x, cols, self.x_shape, (self.oh, self.ow), self.kernel, self.attrs)
        if copies or more_copies:
            _emit_staged_copies(layer, copies + list(more_copies))
        p, k_all, k_g, o_g, c_out = self.p, self.k_all, self.k_g, self.o_g, self.c_out
        c_g = c_in // self.groups
        for i, g in product(range(n_img), range(self.groups)):
            if self.direct:  # A[p, c] = x[i, g*Cg + c, p], read in place
                a = Matrix(x + (i * c_in + g * c_g) * p * 4, 4, p * 4)
            else:
                a = Matrix(cols + (i * p * k_all + g * k_g) * 4, k_all * 4, 4)
            first_out = (i * c_out + g * o_g) * p * 4  # C[p, o] -> out[i, g*Og + o, p]
            d = Matrix(res + first_out, 4, p * 4) if res is not None else None
            _emit_loop_gemm(layer, a, Matrix(wmat + g * k_g * o_g * 4, o_g * 4, 4),
                            Matrix(out + first_out, 4, p * 4), p, k_g, o_g,
                            bias_addr=bias_addr + g * o_g * 4 if bias_addr is not None else None,
                            d=d, act_segments=act, repeat=n_img * self.groups)


def conv2d_program(hw: HardwareConfig, layer_id: int, x_shape, weight: np.ndarray,
                   attrs: Conv2dAttrs, bias: np.ndarray | None = None,
                   residual: Param | None = None, relu: bool = False,
                   groups: int = 1) -> AcceleratorCall:
    """NCHW conv2d as im2col DMA gathers + one LOOP_GEMM per (image, group).

    The im2col matrix has rows (oh, ow) and columns (c, kh, kw), so group ``g``'s operand is
    the contiguous column block of its channels: ``[P, Cg*KH*KW] @ [Cg*KH*KW, Og]``
    (depthwise: ``Cg = 1``, K = KH*KW per channel), all from one gather pass. A 1x1,
    stride-1, unpadded convolution reads its input in place (no im2col)."""
    conv = _Conv(x_shape, weight, attrs, groups)
    layer = _Layer(hw, layer_id)
    x = layer.input(Param(0), _nbytes(x_shape))
    wmat, bias_addr = conv.constants(layer, bias)
    res = layer.input(residual, _nbytes(conv.out_shape)) if residual is not None else None
    cols = conv.scratch(layer)
    act = _load_relu_table(layer) if relu else 0
    out = layer.output(conv.out_shape)
    conv.emit(layer, x, cols, wmat, bias_addr, out, res, act)
    return layer.finish(conv.out_shape, macs=conv.macs, im2col=not conv.direct)


@dataclass
class ConvTranspose2dAttrs:
    strides: tuple
    padding: tuple  # top, left, bottom, right (may be negative: output_padding folded in)
    dilation: tuple
    output_padding: tuple = (0, 0)


@dataclass
class _SubPixelAxis:
    """One spatial axis of a transposed convolution as a stride-1 convolution on the input
    grid with ``stride`` output phases. Output index ``o`` is ``(q0 + q) * stride + r - pad``:
    row ``q`` of phase ``r`` of the sub-pixel convolution ``Y``."""

    n_in: int
    n_out: int
    stride: int
    pad: int         # the transposed convolution's leading padding
    q0: int          # first input-grid row Y computes
    rows: int        # rows of Y
    kernel: int      # taps of the sub-pixel kernel
    dilation: int    # its dilation
    conv_pad: tuple  # its padding (before, after)
    taps: list       # taps[r][u]: the transposed kernel index phase r's tap u reads, or None

    def phase(self, r: int) -> tuple[int, int, int]:
        """(first output index, its row of Y, count) of the outputs phase ``r`` produces."""
        first = (r - self.pad) % self.stride
        count = len(range(first, self.n_out, self.stride))
        return first, (first + self.pad - r) // self.stride - self.q0, count


def _sub_pixel_axis(n_in: int, k: int, s: int, d: int, pad_begin: int,
                    pad_end: int) -> _SubPixelAxis:
    """``out[o] = sum x[i] w[j]`` over ``i*s + j*d = o + pad_begin``: writing ``o + pad_begin
    = q*s + r``, ``i = q - t`` with ``j*d = t*s + r``, so phase ``r`` is a correlation of x
    over ``t = 0 .. (k-1)*d // s`` (a stride-1 convolution with the flipped taps; dilation
    ``d / s`` when ``s`` divides ``d``, where only phase 0 has taps)."""
    n_out = s * (n_in - 1) + d * (k - 1) + 1 - pad_begin - pad_end
    if n_out < 1:
        raise CodegenError(f"conv2d_transpose: an axis of {n_in} gives {n_out} outputs")
    span = d * (k - 1) // s + 1          # taps t = 0 .. span-1
    dil = d // s if d % s == 0 else 1
    kernel = (span - 1) // dil + 1
    q0 = pad_begin // s
    rows = (n_out - 1 + pad_begin) // s - q0 + 1
    before = span - 1 - q0
    after = rows - 1 + span - n_in - before
    taps = []
    for r in range(s):
        row = []
        for u in range(kernel):
            num = (span - 1 - u * dil) * s + r  # j * d
            row.append(num // d if num % d == 0 and num // d < k else None)
        taps.append(row)
    return _SubPixelAxis(n_in, n_out, s, pad_begin, q0, rows, kernel, dil, (before, after), taps)


def _phase_views(axes, channels: int, y_shape, out_shape):
    """Per output phase (rh, rw): (Y element offset, Y strides, output element offset, output
    strides, view shape) over (n, channel, row, column) of the phase's outputs."""
    ah, aw = axes
    n_img, y_c, qh, qw = y_shape
    _, _, oh, ow = out_shape
    views = []
    for rh, rw in product(range(ah.stride), range(aw.stride)):
        (fh, yh, ch), (fw, yw, cw) = ah.phase(rh), aw.phase(rw)
        if not ch or not cw:
            continue
        phase = rh * aw.stride + rw
        y_strides = [y_c * qh * qw, ah.stride * aw.stride * qh * qw, qw, 1]
        o_strides = [channels * oh * ow, oh * ow, ah.stride * ow, aw.stride]
        views.append(((phase * qh + yh) * qw + yw, y_strides, fh * ow + fw, o_strides,
                      (n_img, channels, ch, cw)))
    return views


def conv2d_transpose_program(hw: HardwareConfig, layer_id: int, x_shape, weight: np.ndarray,
                             attrs: ConvTranspose2dAttrs, bias: np.ndarray | None = None,
                             residual: Param | None = None, relu: bool = False,
                             groups: int = 1) -> AcceleratorCall:
    """NCHW transposed convolution (weight ``[C_in, C_out / groups, KH, KW]``, IOHW) as a
    sub-pixel convolution: a stride-1 conv2d over the input grid (the existing im2col +
    LOOP_GEMM path) producing ``C_out * SH * SW`` channels ``Y``, one per output phase
    ``(rh, rw)``, then a DMA view interleaving the phases into the output (depth to space) and
    cropping the padding. The weights are rearranged at compile time; no zeros are inserted
    into the input. Kernel == stride, unpadded (2x2 s2 upsampling) is a 1x1 conv, i.e. one GEMM
    reading x in place; 4x4 s2 p1 is a 2x2 conv with every tap used. Where a phase has fewer
    taps than the sub-pixel kernel (kernel not a multiple of the stride, dilation) the missing
    taps are zero weights: they, and the rows of Y the crop drops, are real GEMM MACs and are
    counted. A residual is moved into Y's layout first (the inverse view) so that it is loaded
    as the GEMM's D. Stride 1 needs no rearrangement (Y is the output). The views are staged
    through the fp32 accumulator, so a bf16 target rounds only the GEMM operands."""
    n_img, c_in, h, w = (int(v) for v in x_shape)
    c_in_w, o_g, kh_, kw_ = weight.shape
    if c_in_w != c_in or c_in % groups:
        raise CodegenError(f"conv2d_transpose weight {weight.shape} does not fit {c_in} input "
                           f"channels in {groups} groups")
    c_g, c_out = c_in // groups, o_g * groups
    pt, pl, pb, pr = attrs.padding
    oph, opw = attrs.output_padding
    axes = (_sub_pixel_axis(h, kh_, attrs.strides[0], attrs.dilation[0], pt, pb - oph),
            _sub_pixel_axis(w, kw_, attrs.strides[1], attrs.dilation[1], pl, pr - opw))
    ah, aw = axes
    phases = ah.stride * aw.stride
    # Sub-pixel weights [(g, o, rh, rw), c, uh, uw] (OIHW, groups contiguous in the outputs).
    w_groups = weight.reshape(groups, c_g, o_g, kh_, kw_)
    sub = np.zeros((groups, o_g, ah.stride, aw.stride, c_g, ah.kernel, aw.kernel), np.float32)
    for rh, uh, rw, uw in product(range(ah.stride), range(ah.kernel), range(aw.stride),
                                  range(aw.kernel)):
        jh, jw = ah.taps[rh][uh], aw.taps[rw][uw]
        if jh is not None and jw is not None:
            sub[:, :, rh, rw, :, uh, uw] = w_groups[:, :, :, jh, jw].transpose(0, 2, 1)
    sub = sub.reshape(c_out * phases, c_g, ah.kernel, aw.kernel)
    conv_attrs = Conv2dAttrs((1, 1), (ah.conv_pad[0], aw.conv_pad[0], ah.conv_pad[1],
                                      aw.conv_pad[1]), (ah.dilation, aw.dilation))
    conv = _Conv(x_shape, sub, conv_attrs, groups)
    out_shape = (n_img, c_out, ah.n_out, aw.n_out)
    identity = phases == 1  # then Y is the output itself
    if identity and conv.out_shape != out_shape:
        raise CodegenError(f"internal: stride-1 conv2d_transpose gives {conv.out_shape}, "
                           f"expected {out_shape}")
    layer = _Layer(hw, layer_id)
    x = layer.input(Param(0), _nbytes(x_shape))
    wmat, bias_addr = conv.constants(
        layer, np.repeat(np.asarray(bias, np.float32), phases) if bias is not None else None)
    res = layer.input(residual, _nbytes(out_shape)) if residual is not None else None
    cols = conv.scratch(layer)
    y = d = None
    if not identity:
        y = layer.scratch(_nbytes(conv.out_shape))
        d = layer.scratch(_nbytes(conv.out_shape)) if res is not None else None
    act = _load_relu_table(layer) if relu else 0
    out = layer.output(out_shape)
    views = [] if identity else _phase_views(axes, c_out, conv.out_shape, out_shape)
    res_copies = []
    if d is not None:  # residual -> Y's layout (positions the crop drops stay zero)
        for y0, y_strides, o0, o_strides, shape in views:
            res_copies += _view_copies(hw, res + o0 * 4, o_strides, d + y0 * 4, shape, y_strides,
                                        mem=Mem.ACCUMULATOR)
    conv.emit(layer, x, cols, wmat, bias_addr, out if identity else y,
              res if identity else d, act, res_copies)
    if not identity:  # LOOP_GEMM is a barrier: Y is complete here
        copies = []
        for y0, y_strides, o0, o_strides, shape in views:
            copies += _view_copies(hw, y + y0 * 4, y_strides, out + o0 * 4, shape, o_strides,
                                    mem=Mem.ACCUMULATOR)
        _emit_staged_copies(layer, copies)
    return layer.finish(out_shape, macs=conv.macs, im2col=not conv.direct, sub_pixel=phases)


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
