"""Vector-engine layers on accumulator rows: elementwise ops (VEC, tensor broadcast by DMA, PWL
epilogues and negations), max pooling, and max over trailing axes (reduce-max trees)."""
from __future__ import annotations

import numpy as np

from ..hardware import HardwareConfig
from ..isa import ELEM_BYTES, ELEM_TYPE_BYTES, ElemType, Mem, Op, Queue, VecOp, bit
from .layer import (AcceleratorCall, CodegenError, Param, _ceil, _Layer, _nbytes, _split,
                    _trailing_reduction)
from .movement import Copy, _broadcast_strides, _emit_staged_copies, _view_copies, staging_rows


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


NEG_TABLE = np.array([[-np.inf, -1.0, 0.0]], dtype=np.float32)


def table_entries(hw: HardwareConfig) -> int:
    """PWL memory entries one layer's table may use: an elementwise layer loads its table and,
    for subtract / minimum, the negation table after it (elementwise_program)."""
    return hw.pwl_entries - len(NEG_TABLE)
VEC_OPS = {"add": VecOp.ADD, "subtract": VecOp.ADD, "multiply": VecOp.MUL,
           "maximum": VecOp.MAX, "minimum": VecOp.MAX, "where": VecOp.SELECT}


def elementwise_program(hw: HardwareConfig, layer_id: int, shape, op: str | None,
                        operands: list, table: np.ndarray | None = None) -> AcceleratorCall:
    """``table(a <op> b)`` (or ``table(a)``) on accumulator rows: VEC for the op, PWL maps for
    the table and for negations (``a - b = a + neg(b)``, ``min(a, b) = -max(-a, -b)``).
    ``where`` takes three operands (a 0/1 condition, x, y): one VEC select.

    ``operands`` are ``(Param or constant array, shape[, dtype])`` broadcastable to ``shape``:
    constants are broadcast at compile time, tensors by strided DMA copies into scratch DRAM;
    a bool / integer tensor (a Where condition) is converted to fp32 by its LOADs.
    The flattened output is processed in double-buffered tiles of DIM-wide rows.
    """
    shape = tuple(int(v) for v in shape)
    total, d = int(np.prod(shape, dtype=np.int64)), hw.dim
    if op is not None and op not in VEC_OPS:
        raise CodegenError(f"no vector op for '{op}'")
    layer = _Layer(hw, layer_id)
    sources, elems, expand = [], [], []  # DRAM address and element bytes per operand
    for value, vshape, *dtype in operands:
        vshape = tuple(int(v) for v in vshape)
        if isinstance(value, Param):
            etype = ElemType[dtype[0]] if dtype else ElemType.float32
            elem = ELEM_TYPE_BYTES[etype]
            addr = layer.input(value, int(np.prod(vshape, dtype=np.int64)) * elem, etype)
            if vshape != shape:
                expand.append((addr, vshape, len(sources), elem))
            sources.append(addr)
            elems.append(elem)
        else:
            sources.append(layer.const(np.broadcast_to(np.asarray(value, np.float32), shape)))
            elems.append(4)
    for addr, vshape, slot, _ in expand:  # broadcast copies land as fp32
        sources[slot], elems[slot] = layer.scratch(_nbytes(shape)), 4
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
    # every broadcast tensor in one staged stream: its single hand-off token orders all of
    # them before the first accumulator load (a stream per tensor raced on the staging rows)
    pending = _emit_staged_copies(layer, [
        cp for addr, vshape, slot, elem in expand
        for cp in _view_copies(hw, addr, _broadcast_strides(vshape, shape), sources[slot], shape,
                               src_elem=elem)
    ], handoff=True)
    n_ops = len(sources)
    tile_rows = max(1, min(_ceil(total, d), hw.acc_rows // (2 * n_ops)))
    tiles = list(_split(0, total, tile_rows * d))
    for t, (e0, e1) in enumerate(tiles):
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
                             dram_addr=src + elem * elems[j], rows=nrows, cols=ncols,
                             row_stride=d * elems[j], col_stride=elems[j])
        a_row, b_row = buf, buf + tile_rows
        steps = []  # (opcode, operands) on the accumulator, in place into a_row
        pwl = lambda row, tab: (Op.PWL, dict(dst_row=row, src_row=row, rows=rows,
                                              table_base=tab[0], n_segments=tab[1]))
        if op == "minimum":
            steps.append(pwl(a_row, neg))
        if op in ("subtract", "minimum"):
            steps.append(pwl(b_row, neg))
        if op == "where":  # condition rows (a_row) are overwritten by the selection
            steps.append((Op.VEC, dict(op=VecOp.SELECT, dst_row=a_row, a_row=b_row,
                                       b_row=buf + 2 * tile_rows, rows=rows)))
        elif op is not None:
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
                         # frees the buffer only for a tile that reuses it: no token left over
                         signal=bit(Queue.LOAD) if pi == len(parts) - 1 and t + 2 < len(tiles)
                         else 0,
                         src_mem=Mem.ACCUMULATOR, src_row=a_row + r0, dram_addr=out + elem * 4,
                         rows=nrows, cols=ncols, row_stride=d * 4, col_stride=4)
    return layer.finish(shape, macs=0)


def reduce_max_program(hw: HardwareConfig, layer_id: int, x_shape, axes,
                       keepdims: bool) -> AcceleratorCall:
    """Max over trailing axes: DIM reductions at once, each down a column of the accumulator
    (transposed load: one row per reduced element), combined by a tree of VEC max ops."""
    return _vec_reduction_program(hw, layer_id, x_shape, axes, keepdims, VecOp.MAX)


def reduce_prod_program(hw: HardwareConfig, layer_id: int, x_shape, axes,
                        keepdims: bool) -> AcceleratorCall:
    """Product over trailing axes: the max tree's schedule with VEC multiplies (fp32 in the
    accumulator, so the input is never rounded to the operand dtype)."""
    return _vec_reduction_program(hw, layer_id, x_shape, axes, keepdims, VecOp.MUL)


def _vec_reduction_program(hw: HardwareConfig, layer_id: int, x_shape, axes, keepdims: bool,
                           vec_op) -> AcceleratorCall:
    """An associative VEC op (max, mul) folded over trailing axes: each chunk halved in place,
    its result folded into a running row per column group."""
    what = "max" if vec_op == VecOp.MAX else "prod"
    r, length, out_shape = _trailing_reduction(what, x_shape, axes, keepdims)
    d = hw.dim
    chunk = max(1, min(length, (hw.acc_rows - 2) // 2))  # rows of one double-buffered chunk
    layer = _Layer(hw, layer_id)
    x = layer.input(Param(0), _nbytes(x_shape))
    out = layer.output(out_shape)
    acc_row = 2 * chunk  # running result of the current column group
    step = 0
    steps = _ceil(r, d) * _ceil(length, chunk)  # chunks loaded over all column groups
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
                ops.append(dict(op=vec_op, dst_row=buf, a_row=buf, b_row=buf + n - h, rows=h))
                n -= h
            if ci == 0:  # the first chunk's result starts the running row (max(a, a): a copy)
                ops.append(dict(op=VecOp.MAX, dst_row=acc_row, a_row=buf, b_row=buf, rows=1))
            else:
                ops.append(dict(op=vec_op, dst_row=acc_row, a_row=acc_row, b_row=buf, rows=1))
            last = ci == len(chunks) - 1
            for oi, fields in enumerate(ops):
                signal = 0
                if oi == len(ops) - 1:  # the buffer is free for the load two chunks on
                    frees = bit(Queue.LOAD) if step + 2 < steps else 0
                    signal = frees | (bit(Queue.STORE) if last else 0)
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
