"""DMA data movement: double-buffered LOAD/STORE staging through the scratchpad, strided views
of DRAM tensors, and the layers that only move data (concat, strided_slice, transpose,
resampling, padding (constant, edge, reflect, wrap), integer-to-float casts, embedding lookups
by GATHER). The GEMM and vector layers stage their im2col gathers, broadcasts and padding with
the same helpers."""
from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import numpy as np

from ..hardware import HardwareConfig
from ..isa import ELEM_TYPE_BYTES, ElemType, Mem, Op, Queue, bit
from .layer import AcceleratorCall, CodegenError, Param, _ceil, _Layer, _nbytes, _split


# ----------------------------------------------------------------- DMA staging (load -> store)
@dataclass
class Copy:
    """One 2-D block copied DRAM -> on chip -> DRAM (im2col gathers, transposes), staged in
    the scratchpad or the fp32 accumulator (``mem``: values that must not be rounded to a bf16
    operand dtype on the way: GEMM results rearranged, exact data movement). With ``index``
    set, the block's rows are table rows picked by ``rows`` integer indices read from that
    address (GATHER; ``src`` is the table's first column, ``src_row_stride`` its row pitch,
    ``table_rows`` its length); otherwise a strided LOAD."""

    src: int
    src_row_stride: int
    src_col_stride: int
    dst: int
    dst_row_stride: int
    dst_col_stride: int
    rows: int
    cols: int
    mem: int = Mem.SCRATCHPAD
    index: int | None = None
    table_rows: int = 0


def staging_rows(hw: HardwareConfig, mem: int = Mem.SCRATCHPAD) -> int:
    """Rows per staging buffer in ``mem`` (two buffers alternate so loads overlap stores)."""
    return (hw.acc_rows if mem == Mem.ACCUMULATOR else hw.sp_rows) // 2


def _emit_staged_copies(layer: _Layer, copies: list[Copy], handoff: bool = False) -> bool:
    """Double-buffered LOAD (or GATHER) / STORE pairs, each through its copy's ``mem``; tokens:
    load->store 'ready', store->load 'free'. Staged through the fp32 accumulator a copy is
    exact on every target (a bf16 scratchpad rounds what enters it).

    Stores signal the load queue only for buffers a later copy reuses, so no token is left
    over; with ``handoff`` the last store also signals, and the caller's next load must wait
    for it (DRAM written here and read next is then ordered in time too). Returns whether a
    hand-off token is pending.
    """
    n = len(copies)
    for j, cp in enumerate(copies):
        half = staging_rows(layer.hw, cp.mem)
        if cp.rows > half or cp.cols > layer.hw.dim:
            raise CodegenError(f"internal: copy block {cp.rows}x{cp.cols} exceeds staging buffer")
        row = (j % 2) * half
        frees = j + 2 < n or (handoff and j == n - 1)
        tokens = {"wait": bit(Queue.STORE) if j >= 2 else 0, "signal": bit(Queue.STORE)}
        if cp.index is None:
            layer.b.emit(Op.LOAD, **tokens, dst_mem=cp.mem, dst_row=row, dram_addr=cp.src,
                         rows=cp.rows, cols=cp.cols, row_stride=cp.src_row_stride,
                         col_stride=cp.src_col_stride)
        else:
            layer.b.emit(Op.GATHER, **tokens, dst_mem=cp.mem, dst_row=row,
                         table_addr=cp.src, table_rows=cp.table_rows,
                         row_stride=cp.src_row_stride, index_addr=cp.index, rows=cp.rows,
                         cols=cp.cols)
        layer.b.emit(Op.STORE, wait=bit(Queue.LOAD), signal=bit(Queue.LOAD) if frees else 0,
                     src_mem=cp.mem, src_row=row, dram_addr=cp.dst, rows=cp.rows,
                     cols=cp.cols, row_stride=cp.dst_row_stride, col_stride=cp.dst_col_stride)
    return handoff and n > 0


def _view_copies(hw: HardwareConfig, src: int, src_strides, dst: int, out_shape,
                 dst_strides=None, src_elem: int = 4, mem: int = Mem.SCRATCHPAD,
                 dst_elem: int = 4) -> list[Copy]:
    """Copies that write ``out_shape`` at ``dst`` (dense, or with element ``dst_strides``) from
    element strides ``src_strides`` (one per output dim; 0 broadcasts; source elements of
    ``src_elem`` bytes, destination elements of ``dst_elem``): transposes, broadcasts, slices and concatenation are all such views.
    ``mem``: the on-chip memory staging them (the fp32 accumulator moves values exactly on a
    bf16 target)."""
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
        for (r0, r1), (c0, c1) in product(_split(0, r2, staging_rows(hw, mem)),
                                          _split(0, c2, hw.dim)):
            copies.append(Copy(
                src=src + (src0 + r0 * src_strides[-2] + c0 * src_strides[-1]) * src_elem,
                src_row_stride=src_strides[-2] * src_elem,
                src_col_stride=src_strides[-1] * src_elem,
                dst=dst + (dst0 + r0 * dst_strides[-2] + c0 * dst_strides[-1]) * dst_elem,
                dst_row_stride=dst_strides[-2] * dst_elem,
                dst_col_stride=dst_strides[-1] * dst_elem,
                rows=r1 - r0, cols=c1 - c0, mem=mem))
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
    # an empty operand (e.g. an empty Split part) contributes nothing and has no region
    srcs = [None if not int(np.prod(sh)) else
            layer.input(value, _nbytes(sh)) if isinstance(value, Param) else layer.const(value)
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


def resample_program(hw: HardwareConfig, layer_id: int, x_shape, out_shape,
                     axis_maps) -> AcceleratorCall:
    """Nearest-neighbour resampling as one DMA view: per axis, output index ``o`` reads input
    index ``offset + (o // up) * down`` (``axis_maps``: one ``(up, down, offset)`` per axis;
    ``up`` > 1 repeats each element, ``down`` > 1 skips). An integer upsample is a broadcast
    view (source stride 0 over the repeats), a downsample a strided one: no arithmetic at all.
    The repeats come first in the view so that each copy moves whole (rows, cols) planes."""
    x_shape, out_shape = tuple(int(v) for v in x_shape), tuple(int(v) for v in out_shape)
    if not len(axis_maps) == len(x_shape) == len(out_shape):
        raise CodegenError(f"resample: {len(axis_maps)} axis maps for input {list(x_shape)} "
                           f"and output {list(out_shape)}")
    for dim, out, (up, down, offset) in zip(x_shape, out_shape, axis_maps):
        if (up < 1 or down < 1 or out % up or not 0 <= offset
                or offset + (out // up - 1) * down >= dim):
            raise CodegenError(f"resample: axis map up={up} down={down} offset={offset} does "
                               f"not take an axis of {dim} to {out}")
    in_strides, out_strides = _dense_strides(x_shape), _dense_strides(out_shape)
    repeats, quotients = [], []  # (size, source stride, destination stride) per view dim
    base = 0
    for (up, down, offset), dim, sin, sout in zip(axis_maps, out_shape, in_strides, out_strides):
        base += offset * sin
        if up > 1:
            repeats.append((up, 0, sout))
        quotients.append((dim // up, down * sin, up * sout))
    view = repeats + quotients
    layer = _Layer(hw, layer_id)
    x = layer.input(Param(0), _nbytes(x_shape))
    out = layer.output(out_shape)
    _emit_staged_copies(layer, _view_copies(hw, x + base * 4, [s for _, s, _ in view], out,
                                            [n for n, _, _ in view], [d for _, _, d in view]))
    return layer.finish(out_shape, macs=0)


def cast_program(hw: HardwareConfig, layer_id: int, shape, src_dtype: str,
                 dst_dtype: str = "float32") -> AcceleratorCall:
    """ONNX Cast between float32 and an integer or bool type, by DMA: a dense copy whose LOADs
    convert each element of an integer / bool region to the nearest fp32 and whose STOREs
    convert fp32 to the destination type (bool: nonzero; integers truncated toward zero, out
    of range an error), staged through the fp32 accumulator (a bf16 scratchpad would round
    integers above 256)."""
    shape = tuple(int(v) for v in shape)
    src, dst = _elem_type(src_dtype), _elem_type(dst_dtype)
    layer = _Layer(hw, layer_id)
    x = layer.input(Param(0), int(np.prod(shape, dtype=np.int64)) * ELEM_TYPE_BYTES[src], src)
    out = layer.output(shape, dst)
    _emit_staged_copies(layer, _view_copies(hw, x, _dense_strides(shape), out, shape,
                                            src_elem=ELEM_TYPE_BYTES[src],
                                            dst_elem=ELEM_TYPE_BYTES[dst], mem=Mem.ACCUMULATOR))
    return layer.finish(shape, macs=0)


def gather_program(hw: HardwareConfig, layer_id: int, table: np.ndarray, index_shape,
                   index_dtype: str, axis: int = 0) -> AcceleratorCall:
    """``take(table, indices, axis)`` for a constant table (ONNX Gather; on axis 0 an embedding
    lookup). The table is read as ``[outer, n, inner]`` around ``axis``: per outer slab and
    block of up to half the accumulator's rows and DIM columns, one GATHER picks the rows
    named by the indices and one STORE writes them densely; staged through the fp32
    accumulator, the lookup is exact on every target. Negative indices count from the end,
    out-of-range ones stop the run (the simulator names them)."""
    table = np.ascontiguousarray(table, dtype=np.float32)
    if table.ndim < 1:
        raise CodegenError("gather: the table is a scalar")
    axis %= table.ndim
    n_rows = table.shape[axis]
    if n_rows < 1:
        raise CodegenError(f"gather: table of shape {list(table.shape)} has no rows on axis {axis}")
    index_shape = tuple(int(v) for v in index_shape)
    outer = int(np.prod(table.shape[:axis], dtype=np.int64))
    inner = int(np.prod(table.shape[axis + 1:], dtype=np.int64))
    n = int(np.prod(index_shape, dtype=np.int64))
    out_shape = tuple(table.shape[:axis]) + index_shape + tuple(table.shape[axis + 1:])
    etype = _elem_type(index_dtype)
    elem = ELEM_TYPE_BYTES[etype]
    layer = _Layer(hw, layer_id)
    idx = layer.input(Param(0), n * elem, etype)
    tab = layer.const(table)
    out = layer.output(out_shape)
    copies = [Copy(src=tab + (o * n_rows * inner + c0) * 4, src_row_stride=inner * 4,
                   src_col_stride=4, dst=out + ((o * n + r0) * inner + c0) * 4,
                   dst_row_stride=inner * 4, dst_col_stride=4, rows=r1 - r0, cols=c1 - c0,
                   mem=Mem.ACCUMULATOR, index=idx + r0 * elem, table_rows=n_rows)
              for o in range(outer) for r0, r1 in _split(0, n, staging_rows(hw, Mem.ACCUMULATOR))
              for c0, c1 in _split(0, inner, hw.dim)]
    _emit_staged_copies(layer, copies)
    return layer.finish(out_shape, macs=0)


def _elem_type(dtype: str) -> ElemType:
    try:
        return ElemType[str(dtype)]
    except KeyError:
        raise CodegenError(f"DRAM holds {', '.join(t.name for t in ElemType)} tensors, not "
                           f"{dtype}") from None


def broadcast_program(hw: HardwareConfig, layer_id: int, x_shape, out_shape) -> AcceleratorCall:
    """``broadcast_to`` (ONNX Expand) as one DMA view: numpy broadcasting, source stride 0 over
    the broadcast axes. Staged through the fp32 accumulator: the values move exactly on a bf16
    target too."""
    x_shape, out_shape = tuple(int(v) for v in x_shape), tuple(int(v) for v in out_shape)
    padded = (1,) * (len(out_shape) - len(x_shape)) + x_shape
    if len(padded) != len(out_shape) or any(d not in (1, o) for d, o in zip(padded, out_shape)):
        raise CodegenError(f"broadcast: {list(x_shape)} does not broadcast to {list(out_shape)}")
    layer = _Layer(hw, layer_id)
    x = layer.input(Param(0), _nbytes(x_shape))
    out = layer.output(out_shape)
    _emit_staged_copies(layer, _view_copies(hw, x, _broadcast_strides(x_shape, out_shape), out,
                                            out_shape, mem=Mem.ACCUMULATOR))
    return layer.finish(out_shape, macs=0)


def tile_program(hw: HardwareConfig, layer_id: int, x_shape, repeats) -> AcceleratorCall:
    """``tile`` (ONNX Tile) as one DMA view: output axis ``i`` of ``r * n`` elements is the
    view pair (repeat ``r``: source stride 0, destination stride ``n * stride``; element
    ``n``: the input's stride), repeats first so that each copy moves whole planes. Staged
    through the fp32 accumulator (exact on a bf16 target)."""
    x_shape, repeats = tuple(int(v) for v in x_shape), [int(r) for r in repeats]
    if len(repeats) < len(x_shape) or any(r < 1 for r in repeats):
        raise CodegenError(f"tile: repeats {repeats} for an input of shape {list(x_shape)}")
    x_full = (1,) * (len(repeats) - len(x_shape)) + x_shape  # numpy: leading axes added
    out_shape = tuple(r * n for r, n in zip(repeats, x_full))
    in_strides, out_strides = _dense_strides(x_full), _dense_strides(out_shape)
    reps = [(r, 0, n * so) for r, n, so in zip(repeats, x_full, out_strides) if r > 1]
    view = reps + list(zip(x_full, in_strides, out_strides))
    layer = _Layer(hw, layer_id)
    x = layer.input(Param(0), _nbytes(x_shape))
    out = layer.output(out_shape)
    _emit_staged_copies(layer, _view_copies(hw, x, [s for _, s, _ in view], out,
                                            [n for n, _, _ in view], [d for _, _, d in view],
                                            mem=Mem.ACCUMULATOR))
    return layer.finish(out_shape, macs=0)


# ONNX Pad's border modes -> numpy's (ONNX's reference is np.pad), by the names Relax uses.
PAD_MODES = {"replicate": "edge", "reflect": "reflect", "circular": "wrap"}


def pad_program(hw: HardwareConfig, layer_id: int, x_shape, pad_width, value: float = 0.0,
                mode: str = "constant") -> AcceleratorCall:
    """ONNX Pad as DMA views, staged through the fp32 accumulator (values move exactly on every
    target; no element is written twice).

    ``constant``: the border, cut into disjoint slabs (along axis d: the before / after bands,
    inside the input's extent on the axes before d, full on the axes after), is a broadcast of
    the one-element constant (source strides 0); the interior is the input copied densely.
    ``replicate`` / ``reflect`` / ``circular`` (ONNX edge / reflect / wrap): each output index
    along an axis reads the input index ``np.pad(arange(n), widths, mode)`` gives; that map is
    cut into runs of evenly spaced indices (the interior and a wrap border step 1, an edge
    border step 0, a reflect border, which runs backwards, one index per run since DMA strides
    are non-negative), and every combination of one run per axis is one strided view."""
    x_shape = tuple(int(v) for v in x_shape)
    rank = len(x_shape)
    before = [int(v) for v in pad_width[0::2]]
    after = [int(v) for v in pad_width[1::2]]
    if len(before) != rank or len(after) != rank or min(before + after, default=0) < 0:
        raise CodegenError(f"pad: widths {list(pad_width)} for a rank-{rank} input "
                           "(two non-negative widths per axis)")
    if mode != "constant" and mode not in PAD_MODES:
        raise CodegenError(f"pad: mode '{mode}' (constant, {', '.join(PAD_MODES)})")
    out_shape = tuple(n + b + a for n, b, a in zip(x_shape, before, after))
    out_strides = _dense_strides(out_shape)
    layer = _Layer(hw, layer_id)
    x = layer.input(Param(0), _nbytes(x_shape))
    fill = layer.const(np.full(1, value, np.float32)) if mode == "constant" else None
    out = layer.output(out_shape)
    acc = Mem.ACCUMULATOR
    copies = []
    if mode != "constant":
        if not all(x_shape) and any(out_shape):
            raise CodegenError(f"pad: mode '{mode}' of an empty input {list(x_shape)}")
        x_strides = _dense_strides(x_shape)
        axis_runs = [_index_runs(np.pad(np.arange(n), (b, a), mode=PAD_MODES[mode]))
                     for n, b, a in zip(x_shape, before, after)]
        for runs in product(*axis_runs):
            src = x + sum(r[2] * st for r, st in zip(runs, x_strides)) * 4
            dst = out + sum(r[0] * st for r, st in zip(runs, out_strides)) * 4
            copies += _view_copies(hw, src, [r[3] * st for r, st in zip(runs, x_strides)], dst,
                                   [r[1] for r in runs], out_strides, mem=acc)
        _emit_staged_copies(layer, copies)
        return layer.finish(out_shape, macs=0)
    for d in range(rank):
        for start, size in ((0, before[d]), (before[d] + x_shape[d], after[d])):
            shape = [x_shape[i] if i < d else out_shape[i] for i in range(rank)]
            shape[d] = size
            origin = [before[i] if i < d else 0 for i in range(rank)]
            origin[d] = start
            if size and all(shape):
                base = out + sum(o * st for o, st in zip(origin, out_strides)) * 4
                copies += _view_copies(hw, fill, [0] * rank, base, shape, out_strides, mem=acc)
    if all(x_shape):
        base = out + sum(b * st for b, st in zip(before, out_strides)) * 4
        copies += _view_copies(hw, x, _dense_strides(x_shape), base, x_shape, out_strides, mem=acc)
    _emit_staged_copies(layer, copies)
    return layer.finish(out_shape, macs=0)


def _index_runs(index: np.ndarray) -> list[tuple[int, int, int, int]]:
    """``index`` (output position -> source index) as maximal runs of a constant non-negative
    step: (first output position, length, first source index, step)."""
    runs, i = [], 0
    while i < len(index):
        j, step = i, 0
        if i + 1 < len(index) and index[i + 1] >= index[i]:
            step = int(index[i + 1] - index[i])
            while j + 1 < len(index) and index[j + 1] - index[j] == step:
                j += 1
        runs.append((i, j - i + 1, int(index[i]), step))
        i = j + 1
    return runs
