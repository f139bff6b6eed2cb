"""Unit tests against mutation survivors of target/codegen/ and target/backend/
(benchmarks/mutation.py, `make mutation MUTATE="target/codegen/ target/backend/"`).

Each codegen program is run directly in the simulator on a tiny target (4x4 array, small
scratchpad and accumulator) so that every tiling path runs: several tiles, ragged tails,
staging blocks split by rows and columns, reduce chunks. Expected values are numpy references
or closed forms, never values copied from the code under test."""
from __future__ import annotations

import numpy as np
import pytest

from tvm import relax

from nm_tvm.target import codegen as cg
from nm_tvm.target import simulator
from nm_tvm.target.codegen.layer import _ceil, _Layer, _split, _trailing_reduction
from nm_tvm.target.hardware import load_preset
from nm_tvm.target.isa import Program, RegionKind

F32 = np.float32


@pytest.fixture(scope="module")
def hw():
    # dim 4, 64 scratchpad rows (staging buffers of 32 rows), 48 accumulator rows
    return load_preset("fp32-16x16").with_overrides(**{
        "pe_array.rows": 4, "pe_array.cols": 4, "memories.scratchpad_kib": 1,
        "memories.accumulator_kib": 0.75, "memories.pwl_table_entries": 16})


def _dram_elements(ins) -> set[int]:
    o = ins.operands
    return {o["dram_addr"] + r * o["row_stride"] + c * o["col_stride"]
            for r in range(o["rows"]) for c in range(o["cols"])}


def check_tokens(program) -> None:
    """Token hygiene the simulator does not check (docs/ISA.md, "Dependency tokens"): every
    pushed token is popped, and a LOAD reading DRAM that an earlier STORE writes is ordered
    after that STORE by tokens (DRAM is not race-checked: without the token only the timing
    is wrong). Happens-before by FIFO token matching: ``known[q]`` is the last STORE that
    queue ``q`` knows complete (stores complete in order); LOOP_GEMM is a barrier."""
    from collections import deque
    from nm_tvm.target.isa import QUEUE_OF, Op, Queue, bit
    prog = Program.decode(program)
    channels = {(a, b): deque() for a in Queue for b in Queue if a != b}
    known = {q: -1 for q in Queue}
    stores = []  # (index, DRAM elements) of STOREs not yet known complete everywhere
    for i, ins in enumerate(prog.instructions):
        if ins.op == Op.LOOP_GEMM:
            known = {q: i for q in Queue}
            stores = []
            continue
        q = QUEUE_OF[ins.op]
        for src in Queue:
            if ins.wait & bit(src):
                known[q] = max(known[q], channels[(src, q)].popleft())
        if ins.op == Op.LOAD:
            reads = _dram_elements(ins)
            late = [j for j, w in stores if j > known[q] and w & reads]
            assert not late, f"LOAD {i} reads DRAM that STORE {late[0]} writes, unordered"
        elif ins.op == Op.STORE:
            stores.append((i, _dram_elements(ins)))
        done = max(known[q], i) if q == Queue.STORE else known[q]
        for dst in Queue:
            if ins.signal & bit(dst):
                channels[(q, dst)].append(done)
    left = {f"{a.name}->{b.name}": len(c) for (a, b), c in channels.items() if c}
    assert not left, f"tokens left over: {left}"




def run(acc: cg.AcceleratorCall, *params) -> np.ndarray:
    """Run one layer's program: params by index, constants as generated, output last."""
    check_tokens(acc.program)
    args = [np.ascontiguousarray(params[op.index] if isinstance(op, cg.Param) else op, F32)
            for op in acc.operands]
    args.append(np.zeros(acc.out_shape, F32))
    return simulator.run_program(acc.program, args)[-1]


def conv_ref(x, w, b=None, stride=(1, 1), pad=(0, 0, 0, 0), dil=(1, 1), groups=1):
    n, c, h, wd = x.shape
    o, cg_, kh, kw = w.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad[0], pad[2]), (pad[1], pad[3])))
    oh = (h + pad[0] + pad[2] - dil[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wd + pad[1] + pad[3] - dil[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.zeros((n, o, oh, ow))
    og = o // groups
    for g in range(groups):
        for y in range(oh):
            for xx in range(ow):
                patch = xp[:, g * cg_:(g + 1) * cg_,
                           y * stride[0]:y * stride[0] + dil[0] * (kh - 1) + 1:dil[0],
                           xx * stride[1]:xx * stride[1] + dil[1] * (kw - 1) + 1:dil[1]]
                out[:, g * og:(g + 1) * og, y, xx] = np.einsum(
                    "nchw,ochw->no", patch, w[g * og:(g + 1) * og])
    if b is not None:
        out += np.asarray(b).reshape(1, -1, 1, 1)
    return out


# ------------------------------------------------------------------------------ layer helpers
def test_ceil_split_and_trailing_reduction():
    assert [_ceil(a, 4) for a in (0, 1, 4, 5, 8, 9)] == [0, 1, 1, 2, 2, 3]
    assert list(_split(0, 10, 4)) == [(0, 4), (4, 8), (8, 10)]
    assert list(_split(3, 3, 4)) == []
    assert _trailing_reduction("m", (2, 3, 5), [-1, 1], True) == (2, 15, (2, 1, 1))
    assert _trailing_reduction("m", (2, 3, 5), [2], False) == (6, 5, (2, 3))
    with pytest.raises(cg.CodegenError, match=r"m over axes \[0\] of a rank-3 tensor"):
        _trailing_reduction("m", (2, 3, 5), [0], False)


def test_layer_regions_and_errors(hw):
    layer = _Layer(hw, 7)
    a = layer.input(cg.Param(0), 64)
    c = layer.const(np.arange(6, dtype=np.float64).reshape(2, 3))
    s = layer.scratch(32)
    out = layer.output((2, 2))
    assert len({a, c, s, out}) == 4
    assert layer.operands[0] == cg.Param(0)
    assert layer.operands[1].dtype == F32 and layer.operands[1].flags["C_CONTIGUOUS"]
    with pytest.raises(cg.CodegenError, match="input region declared after the output region"):
        layer.input(cg.Param(1), 16)
    call = layer.finish((2, 2), macs=5, note=1)
    assert call.out_shape == (2, 2) and call.macs == 5 and call.notes == {"note": 1}
    prog = Program.decode(call.program)
    assert prog.header["layer_id"] == 7
    kinds = [r.kind for r in prog.regions]
    assert kinds == [RegionKind.ARGUMENT, RegionKind.ARGUMENT, RegionKind.SCRATCH,
                     RegionKind.ARGUMENT]
    assert [r.size for r in prog.regions] == [64, 24, 32, 16]


def test_layer_finish_rejects_dram_overflow(hw):
    small = hw.with_overrides(**{"memories.dram_mib": 1})
    layer = _Layer(small, 0)
    layer.scratch(2 * 2**20)
    with pytest.raises(cg.CodegenError, match=r"needs 2\.0 MiB of DRAM but the target has 1"):
        layer.finish((1,), macs=0)


# ------------------------------------------------------------------------------ GEMM layers
@pytest.mark.parametrize("stride,pad,dil,groups,c_in,c_out", [
    ((1, 1), (0, 0, 0, 0), (1, 1), 1, 5, 6),      # direct 1x1 path below uses kernel 1
    ((2, 1), (1, 0, 2, 1), (1, 2), 1, 5, 6),      # asymmetric stride / pad / dilation
    ((1, 2), (1, 1, 1, 1), (1, 1), 3, 6, 9),      # grouped
    ((1, 1), (2, 2, 2, 2), (2, 2), 6, 6, 6),      # depthwise, dilated
])
def test_conv2d_against_numpy(hw, stride, pad, dil, groups, c_in, c_out):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, c_in, 7, 9)).astype(F32)
    w = rng.standard_normal((c_out, c_in // groups, 3, 2)).astype(F32)
    b = rng.standard_normal(c_out).astype(F32)
    acc = cg.conv2d_program(hw, 0, x.shape, w, cg.Conv2dAttrs(stride, pad, dil), bias=b,
                            groups=groups)
    ref = conv_ref(x, w, b, stride, pad, dil, groups)
    assert acc.out_shape == ref.shape
    assert acc.macs == 2 * ref.shape[2] * ref.shape[3] * c_out * (c_in // groups) * 6
    assert acc.notes == {"im2col": True}
    np.testing.assert_allclose(run(acc, x), ref, rtol=1e-4, atol=1e-4)


def test_conv2d_1x1_direct_with_residual_and_relu(hw):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 5, 3, 7)).astype(F32)
    w = rng.standard_normal((6, 5, 1, 1)).astype(F32)
    res = rng.standard_normal((2, 6, 3, 7)).astype(F32)
    acc = cg.conv2d_program(hw, 0, x.shape, w, cg.Conv2dAttrs((1, 1), (0, 0, 0, 0), (1, 1)),
                            residual=cg.Param(1), relu=True)
    assert acc.notes == {"im2col": False}
    ref = np.maximum(conv_ref(x, w) + res, 0)
    np.testing.assert_allclose(run(acc, x, res), ref, rtol=1e-4, atol=1e-4)


def test_conv2d_rejects_bad_groups(hw):
    with pytest.raises(cg.CodegenError, match=r"does not fit 6 input channels in 4 groups"):
        cg.conv2d_program(hw, 0, (1, 6, 4, 4), np.zeros((4, 2, 1, 1), F32),
                          cg.Conv2dAttrs((1, 1), (0, 0, 0, 0), (1, 1)), groups=4)


@pytest.mark.parametrize("a_shape,b_shape", [
    ((3, 2, 5, 6), (6, 7)),          # shared B: batch folded into M
    ((2, 1, 5, 6), (3, 6, 7)),       # broadcast batch
    ((6,), (2, 6, 5)),               # vector A
    ((2, 5, 6), (6,)),               # vector B
])
def test_matmul_two_tensors_against_numpy(hw, a_shape, b_shape):
    rng = np.random.default_rng(3)
    a = rng.standard_normal(a_shape).astype(F32)
    b = rng.standard_normal(b_shape).astype(F32)
    acc = cg.matmul_program(hw, 0, a_shape, b_shape)
    ref = np.matmul(a.astype(np.float64), b)
    assert acc.out_shape == ref.shape
    m = a_shape[-2] if len(a_shape) > 1 else 1
    n = b_shape[-1] if len(b_shape) > 1 else 1
    batch = np.broadcast_shapes(a_shape[:-2], b_shape[:-2])
    assert acc.macs == int(np.prod(batch)) * m * a_shape[-1] * n
    np.testing.assert_allclose(run(acc, a, b), ref, rtol=1e-4, atol=1e-4)


def test_matmul_constant_operands_bias_residual_relu(hw):
    rng = np.random.default_rng(4)
    a = rng.standard_normal((9, 6)).astype(F32)
    w = rng.standard_normal((6, 5)).astype(F32)
    bias = rng.standard_normal(5).astype(F32)
    res = rng.standard_normal((9, 5)).astype(F32)
    acc = cg.matmul_program(hw, 0, a.shape, w.shape, weight=w, bias=bias,
                            residual=cg.Param(1), relu=True)
    np.testing.assert_allclose(run(acc, a, res), np.maximum(a @ w + bias + res, 0),
                               rtol=1e-4, atol=1e-4)
    # constant A, tensor B in parameter 0; x @ x with one parameter
    acc = cg.matmul_program(hw, 0, a.shape, w.shape, a_operand=a, b_param=cg.Param(0))
    np.testing.assert_allclose(run(acc, w), a @ w, rtol=1e-4, atol=1e-4)
    sq = rng.standard_normal((2, 5, 5)).astype(F32)
    acc = cg.matmul_program(hw, 0, sq.shape, sq.shape, a_operand=cg.Param(0),
                            b_param=cg.Param(0))
    np.testing.assert_allclose(run(acc, sq), sq @ sq, rtol=1e-4, atol=1e-4)
    with pytest.raises(cg.CodegenError, match=r"inner dimensions differ: \(2, 3\) @ \(4, 5\)"):
        cg.matmul_program(hw, 0, (2, 3), (4, 5))


def test_avg_pool_and_mean_against_numpy(hw):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 7, 8)).astype(F32)
    acc = cg.avg_pool2d_program(hw, 0, x.shape, (3, 2), (2, 1), (1, 2))
    # windows: rows oy*2 + {0, 1, 2}, cols ox + {0, 2}
    oh, ow = (7 - 3) // 2 + 1, (8 - 2 - 1) // 1 + 1
    ref = np.zeros((2, 3, oh, ow))
    for y in range(oh):
        for xx in range(ow):
            ref[:, :, y, xx] = x[:, :, 2 * y:2 * y + 3, xx:xx + 3:2].mean(axis=(2, 3))
    assert acc.out_shape == ref.shape and acc.macs == 2 * 3 * oh * ow * 6
    np.testing.assert_allclose(run(acc, x), ref, rtol=1e-5, atol=1e-6)
    with pytest.raises(cg.CodegenError, match="window width 5 exceeds the array width 4"):
        cg.avg_pool2d_program(hw, 0, x.shape, (1, 5), (1, 1), (1, 1))
    for average, keep in ((True, True), (False, False)):
        acc = cg.mean_program(hw, 0, x.shape, [2, 3], keep, average=average)
        ref = x.astype(np.float64).mean((2, 3), keepdims=keep) if average else \
            x.astype(np.float64).sum((2, 3), keepdims=keep)
        assert acc.out_shape == ref.shape and acc.macs == 6 * 56
        np.testing.assert_allclose(run(acc, x), ref, rtol=1e-5, atol=1e-5)


def test_gemm_tile_candidates_follow_their_rules(hw):
    from nm_tvm.target.codegen.gemm import _choose_gemm_tiles, gemm_tile_candidates
    from nm_tvm.target.cost_model import loop_gemm_estimate, loop_gemm_fits
    m, k, n = 37, 13, 9  # K blocks 4, N blocks 3
    cands = list(gemm_tile_candidates(hw, m, k, n))
    assert cands and all(loop_gemm_fits(hw, t) for t in cands)
    assert {t.tile_k for t in cands} <= {1, 2, 4} and {t.tile_n for t in cands} <= {1, 2, 3}
    assert 1 in {t.tile_k for t in cands} and 1 in {t.tile_n for t in cands}
    # tile_m for (1, 1): every fitting DIM * 2^i (capped at m) and m, the largest tile that
    # fits (brute force over the cost model's fit) and that tile split evenly over the tiles
    from nm_tvm.target.cost_model import GemmTiles
    fits = lambda tm, tk=1, tn=1: loop_gemm_fits(hw, GemmTiles(tm, tk, tn))
    ms = {t.tile_m for t in cands if (t.tile_k, t.tile_n) == (1, 1)}
    largest = max(tm for tm in range(1, m + 1) if fits(tm))
    assert largest < m  # so the split below is a real case
    split = -(-m // -(-m // largest))
    assert ms == {tm for tm in (4, 8, 16, 32, 37) if fits(tm)} | {largest, split}
    for tk, tn in ((2, 1), (1, 2), (2, 2)):
        assert fits(1, tk, tn)
        big = max(tm for tm in range(1, m + 1) if fits(tm, tk, tn))
        assert big in {t.tile_m for t in cands if (t.tile_k, t.tile_n) == (tk, tn)}
    assert len(cands) == len(set((t.tile_m, t.tile_k, t.tile_n) for t in cands))
    # the choice: the lowest static estimate (first candidate on ties)
    machine = hw.machine()
    best = min(enumerate(gemm_tile_candidates(machine, m, k, n)), key=lambda it: (
        loop_gemm_estimate(machine, m, k, n, it[1], False).cycles,
        loop_gemm_estimate(machine, m, k, n, it[1], False).steps, it[0]))[1]
    assert _choose_gemm_tiles.__wrapped__(machine, m, k, n, False, 1) == best
    import dataclasses
    tiny = dataclasses.replace(machine, sp_rows=8, acc_rows=4)  # below what any tiling needs
    with pytest.raises(cg.CodegenError, match=r"no GEMM tiling fits: scratchpad has 8 rows and "
                                              r"accumulator 4 rows of 4 elements; at least 16 "
                                              r"and 12 are needed"):
        _choose_gemm_tiles.__wrapped__(tiny, m, k, n, False, 1)


# ------------------------------------------------------------------------------ vector layers
@pytest.mark.parametrize("op", ["add", "subtract", "multiply", "maximum", "minimum"])
def test_elementwise_broadcast_against_numpy(hw, op):
    rng = np.random.default_rng(6)
    shape = (3, 5, 7)  # 105 elements: several tiles and a ragged tail row
    a = rng.standard_normal(shape).astype(F32)
    b = rng.standard_normal((5, 1)).astype(F32)  # a tensor broadcast by DMA
    acc = cg.elementwise_program(hw, 0, shape, op, [(cg.Param(0), shape), (cg.Param(1), b.shape)])
    ref = getattr(np, op)(a, b)
    np.testing.assert_array_equal(run(acc, a, b),
                                  ref.astype(F32))
    # tensor broadcast first, a constant second, then a ReLU table
    c = rng.standard_normal((1, 7)).astype(F32)
    acc = cg.elementwise_program(hw, 0, shape, op, [(cg.Param(0), b.shape), (c, c.shape)],
                                 table=cg.RELU_TABLE)
    np.testing.assert_array_equal(run(acc, b), np.maximum(getattr(np, op)(
        np.broadcast_to(b, shape), c), 0).astype(F32))


def test_elementwise_table_alone_and_errors(hw):
    x = np.linspace(-3, 3, 4 * 9 + 3, dtype=F32).reshape(3, 13)
    table = np.array([[-np.inf, 0.0, -1.0], [0.0, 2.0, 0.5]], F32)  # -1 below 0, 2x + 0.5 above
    acc = cg.elementwise_program(hw, 0, x.shape, None, [(cg.Param(0), x.shape)], table=table)
    np.testing.assert_array_equal(run(acc, x),
                                  np.where(x < 0, F32(-1), 2 * x + F32(0.5)))
    with pytest.raises(cg.CodegenError, match="no vector op for 'divide'"):
        cg.elementwise_program(hw, 0, x.shape, "divide", [(cg.Param(0), x.shape)] * 2)
    big = np.zeros((hw.pwl_entries, 3), F32)  # with the negation table: one entry too many
    with pytest.raises(cg.CodegenError, match=r"PWL table of 1 segments does not fit the "
                                              r"target's 16 entries"):
        cg.elementwise_program(hw, 0, x.shape, "minimum", [(cg.Param(0), x.shape)] * 2,
                               table=big)
    assert cg.table_entries(hw) == hw.pwl_entries - 1


@pytest.mark.parametrize("pool,stride,pad,dil", [
    ((3, 3), (2, 2), (1, 1, 1, 1), (1, 1)),
    ((2, 3), (1, 2), (0, 1, 2, 0), (2, 1)),
    ((1, 1), (1, 1), (0, 0, 0, 0), (1, 1)),
    ((2, 2), (2, 2), (0, 0, 0, 0), (1, 1)),
])
def test_max_pool_against_numpy(hw, pool, stride, pad, dil):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, 9, 11)).astype(F32)
    acc = cg.max_pool2d_program(hw, 0, x.shape, pool, stride, pad, dil)
    xp = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[2]), (pad[1], pad[3])),
                constant_values=-np.inf)
    oh = (xp.shape[2] - dil[0] * (pool[0] - 1) - 1) // stride[0] + 1
    ow = (xp.shape[3] - dil[1] * (pool[1] - 1) - 1) // stride[1] + 1
    ref = np.full((2, 3, oh, ow), -np.inf, F32)
    for ky in range(pool[0]):
        for kx in range(pool[1]):
            ref = np.maximum(ref, xp[:, :, ky * dil[0]:ky * dil[0] + stride[0] * (oh - 1) + 1:
                                     stride[0], kx * dil[1]:kx * dil[1] + stride[1] * (ow - 1)
                                     + 1:stride[1]])
    assert acc.out_shape == ref.shape
    np.testing.assert_array_equal(run(acc, x), ref)


@pytest.mark.parametrize("shape,axes,keep", [((6, 50), [1], False), ((3, 2, 7, 5), [2, 3], True),
                                             ((9,), [0], False)])
def test_reduce_max_against_numpy(hw, shape, axes, keep):
    rng = np.random.default_rng(8)
    x = rng.standard_normal(shape).astype(F32)
    acc = cg.reduce_max_program(hw, 0, shape, axes, keep)
    ref = x.max(axis=tuple(axes), keepdims=keep)
    assert acc.out_shape == ref.shape
    np.testing.assert_array_equal(run(acc, x).reshape(ref.shape),
                                  ref)


# ------------------------------------------------------------------------------ data movement
def test_concat_slice_transpose_against_numpy(hw):
    rng = np.random.default_rng(9)
    a = rng.standard_normal((2, 3, 37, 5)).astype(F32)
    c = rng.standard_normal((2, 2, 37, 5)).astype(F32)
    acc = cg.concat_program(hw, 0, [(cg.Param(0), a.shape), (c, c.shape),
                                    (cg.Param(1), a.shape)], 1)
    np.testing.assert_array_equal(run(acc, a, a), np.concatenate([a, c, a], axis=1))
    acc = cg.concat_program(hw, 0, [(cg.Param(0), a.shape), (cg.Param(1), a.shape)], -1)
    np.testing.assert_array_equal(run(acc, a, 2 * a), np.concatenate([a, 2 * a], axis=-1))
    x = rng.standard_normal((4, 70, 9)).astype(F32)
    acc = cg.strided_slice_program(hw, 0, x.shape, [1, 3, 0], [4, 69, 9], [2, 3, 2])
    np.testing.assert_array_equal(run(acc, x), x[1:4:2, 3:69:3, 0:9:2])
    assert cg.strided_slice_program(hw, 0, x.shape, [0, 5, 0], [4, 5, 9], [1, 1, 1]).out_shape \
        == (4, 0, 9)  # (empty tensors never reach codegen: the patterns refuse them)
    with pytest.raises(cg.CodegenError, match=r"slice with step \[1, -1, 1\]: only positive"):
        cg.strided_slice_program(hw, 0, x.shape, [0, 0, 0], [1, 1, 1], [1, -1, 1])
    for axes in ([2, 0, 1], [-1, -2, 0]):
        acc = cg.transpose_program(hw, 0, x.shape, axes)
        np.testing.assert_array_equal(run(acc, x), np.transpose(x, [a % 3 for a in axes]))


def test_resample_against_numpy(hw):
    rng = np.random.default_rng(10)
    x = rng.standard_normal((2, 3, 5, 6)).astype(F32)
    # H: repeat 3; W: every second element from offset 1
    acc = cg.resample_program(hw, 0, x.shape, (2, 3, 15, 3),
                              [(1, 1, 0), (1, 1, 0), (3, 1, 0), (1, 2, 1)])
    np.testing.assert_array_equal(run(acc, x), np.repeat(x, 3, axis=2)[:, :, :, 1::2])
    acc = cg.resample_program(hw, 0, x.shape, (2, 3, 5, 12),
                              [(1, 1, 0), (1, 1, 0), (1, 1, 0), (2, 1, 0)])
    np.testing.assert_array_equal(run(acc, x), np.repeat(x, 2, axis=3))
    with pytest.raises(cg.CodegenError, match=r"3 axis maps for input \[2, 3, 5, 6\]"):
        cg.resample_program(hw, 0, x.shape, x.shape, [(1, 1, 0)] * 3)
    for bad in ((0, 1, 0), (1, 0, 0), (4, 1, 0), (1, 1, -1), (1, 2, 2), (1, 1, 1)):
        with pytest.raises(cg.CodegenError, match="does not take an axis of 6 to"):
            cg.resample_program(hw, 0, x.shape, (2, 3, 5, 6 if bad[1] == 1 else 3),
                                [(1, 1, 0)] * 3 + [bad])
    assert cg.staging_rows(hw) == hw.sp_rows // 2


# ------------------------------------------------------------------------------ backend readers
@pytest.mark.parametrize("n_in,n_out,mode,rounding,expect", [
    (4, 8, "asymmetric", "floor", [0, 0, 1, 1, 2, 2, 3, 3]),
    (4, 8, "half_pixel", "round_prefer_floor", [0, 0, 1, 1, 2, 2, 3, 3]),
    (2, 4, "half_pixel", "round_prefer_ceil", [0, 0, 1, 1]),   # (o + .5) / 2 - .5 + .5, floor
    (3, 5, "align_corners", "", [0, 1, 1, 2, 2]),             # o / 2, half away from zero
    (3, 6, "asymmetric", "ceil", [0, 1, 1, 2, 2, 2]),          # ceil(o / 2), clamped to 2
    (8, 4, "tf_half_pixel_for_nn", "floor", [1, 3, 5, 7]),     # (o + .5) * 2
    (8, 4, "pytorch_half_pixel", "floor", [0, 2, 4, 6]),       # (o + .5) * 2 - .5
    (8, 1, "pytorch_half_pixel", "floor", [0]),                # one output: coordinate 0
    (5, 1, "align_corners", "floor", [0]),
    (4, 8, "half_pixel", "round", [0, 0, 1, 1, 2, 2, 3, 3]),   # -0.25 rounds to -0 -> 0
    (4, 2, "asymmetric", "", [0, 2]),                          # default rounding: floor
])
def test_nearest_source_index_closed_forms(n_in, n_out, mode, rounding, expect):
    from nm_tvm.resize_matrices import nearest_source_index
    index = nearest_source_index(n_in, n_out, mode, rounding)
    assert index.dtype == np.int64 and index.tolist() == expect


def test_nearest_source_index_unknown_modes():
    from nm_tvm.resize_matrices import nearest_source_index
    assert nearest_source_index(4, 8, "tf_crop_and_resize", "floor") is None
    assert nearest_source_index(4, 8, "asymmetric", "nearest") is None


@pytest.mark.parametrize("index,expect", [
    ([0, 0, 1, 1, 2, 2], (2, 1, 0)), ([1, 3, 5], (1, 2, 1)), ([2, 2, 2], (3, 1, 2)),
    ([5], (1, 1, 5)), ([4, 5, 6, 7], (1, 1, 4)), ([0, 1, 1, 2], None), ([0, 0, 0, 1], None),
    ([0, 0, 2, 2], None), ([3, 2, 1], None), ([0, 2, 3], None), ([1, 1, 2, 2, 4, 4], None),
])
def test_strided_axis_map(index, expect):
    from nm_tvm.target.backend.operators import strided_axis_map
    assert strided_axis_map(np.array(index)) == expect


def test_channel_bias_and_dram_check(hw):
    from nm_tvm.target.backend.composite import channel_bias
    from nm_tvm.target.backend.lower import DramCapacityError, check_total_dram
    out = channel_bias(np.array([[2.0]]), 3, "L")
    assert out.tolist() == [2.0, 2.0, 2.0] and out.dtype == F32 and out.flags["WRITEABLE"]
    assert channel_bias(np.arange(3.0).reshape(1, 3, 1), 3, "L").tolist() == [0, 1, 2]
    with pytest.raises(cg.CodegenError, match=r"conv7: bias of shape \(2,\) is not per output "
                                              r"channel"):
        channel_bias(np.zeros(2), 3, "conv7")
    mib = 2 ** 20
    small = hw.with_overrides(**{"memories.dram_mib": 4})
    layers = [{"dram_const_bytes": mib, "dram_activation_bytes": 2 * mib},
              {"dram_const_bytes": mib, "dram_activation_bytes": mib}]
    check_total_dram(layers, small)  # 2 MiB of weights + 2 MiB of the largest activations
    check_total_dram([], small)
    layers[1]["dram_const_bytes"] += 4
    with pytest.raises(DramCapacityError, match=r"needs at least 4 MiB of DRAM \(weights and "
                                                r"tables of all 2 layers 2 MiB \+ the largest "
                                                r"layer's activations 2 MiB\) but target "
                                                r"'fp32-16x16' has 4"):
        check_total_dram(layers, small)


def test_unique_layer_names():
    from nm_tvm.target.backend.lower import _unique_names
    layers = [{"name": n} for n in ("sm", "conv", "sm", "sm", "fc")]
    _unique_names(layers)
    assert [(x["name"], x["node"]) for x in layers] == [
        ("sm/0", "sm"), ("conv", "conv"), ("sm/1", "sm"), ("sm/2", "sm"), ("fc", "fc")]


def test_dram_use_splits_constants_from_activations(hw):
    from nm_tvm.target.backend.lower import _dram_use
    w = np.ones((6, 5), F32)
    acc = cg.matmul_program(hw, 0, (9, 6), w.shape, weight=w, bias=np.zeros(5, F32))
    # constants: the weight (120 B) and the bias (20 B); activations: A (216 B) and C (180 B)
    assert _dram_use(acc, Program.decode(acc.program)) == (140, 216 + 180)


def test_wide_layers_split_staging_blocks(hw):
    """Rows of more than a staging buffer (32 rows here): im2col and pooling gathers are split
    into several blocks along the output width."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((1, 3, 4, 75)).astype(F32)
    w = rng.standard_normal((2, 3, 2, 3)).astype(F32)
    attrs = cg.Conv2dAttrs((1, 1), (1, 2, 0, 1), (1, 1))
    acc = cg.conv2d_program(hw, 0, x.shape, w, attrs)
    np.testing.assert_allclose(run(acc, x), conv_ref(x, w, None, (1, 1), (1, 2, 0, 1)),
                               rtol=1e-4, atol=1e-4)
    acc = cg.avg_pool2d_program(hw, 0, x.shape, (2, 2), (1, 1), (1, 1))
    ref = (x[:, :, :-1, :-1] + x[:, :, 1:, :-1] + x[:, :, :-1, 1:] + x[:, :, 1:, 1:]) / 4
    np.testing.assert_allclose(run(acc, x), ref, rtol=1e-5, atol=1e-6)
    tall = rng.standard_normal((1, 2, 70, 6)).astype(F32)
    acc = cg.max_pool2d_program(hw, 0, tall.shape, (1, 1), (1, 1), (1, 0, 0, 0), (1, 1))
    expect = np.concatenate([np.full((1, 2, 1, 6), -np.inf, F32), tall], axis=2)
    np.testing.assert_array_equal(run(acc, tall), expect)


# ------------------------------------------------------------------------------ patterns
def _add_call():
    a = relax.Var("a", relax.TensorType((2, 3), "float32"))
    b = relax.Var("b", relax.TensorType((2, 3), "float32"))
    return a, b, relax.op.add(a, b)


def test_simple_patterns_shapes_and_names():
    from nm_tvm.target.backend.patterns import simple_patterns
    check = lambda ctx: True  # noqa: E731
    pats = simple_patterns("add", "relax.add", check, arity=2, epilogues=True)
    assert [p.name for p in pats] == ["nm.add_relu", "nm.add_pwl", "nm.add"]
    assert all(p.check is not None for p in pats)
    a, b, add = _add_call()
    assert pats[2].pattern.match(add) and not pats[0].pattern.match(add)
    assert pats[0].pattern.match(relax.op.nn.relu(add))
    assert all(set(p.annotation_patterns) == {"anchor"} for p in pats)
    one = simple_patterns("relu", "relax.nn.relu", check)
    assert [p.name for p in one] == ["nm.relu"] and one[0].pattern.match(relax.op.nn.relu(a))
    assert not one[0].pattern.match(add)


def test_gemm_patterns_every_epilogue_longest_first():
    from tvm.relax.dpl import is_op, wildcard
    from nm_tvm.target.backend.patterns import gemm_patterns
    check = lambda ctx: True  # noqa: E731
    pats = gemm_patterns("matmul", lambda: is_op("relax.matmul")(wildcard(), wildcard()), check)
    names = [p.name for p in pats]
    assert names[0] == "nm.matmul_bias_residual_relu" and names[-1] == "nm.matmul"
    assert sorted(names) == sorted(f"nm.matmul{b}{r}{u}" for b in ("", "_bias")
                                   for r in ("", "_residual") for u in ("", "_relu"))
    sizes = [n.count("_") for n in names]
    assert sizes == sorted(sizes, reverse=True) and all(p.check is not None for p in pats)
    full = pats[0].annotation_patterns
    assert set(full) == {"anchor", "bias", "residual", "relu"}
    a, b, _ = _add_call()
    mm = relax.op.matmul(a, relax.Var("w", relax.TensorType((3, 3), "float32")))
    biased = relax.op.add(mm, relax.const(np.ones(3, F32)))
    chain = relax.op.nn.relu(relax.op.add(biased, b))
    assert pats[0].pattern.match(chain)
    bias_only = next(p for p in pats if p.name == "nm.matmul_bias")
    assert bias_only.pattern.match(biased) and not bias_only.pattern.match(relax.op.add(mm, b))


def test_accelerator_op_registers_and_dispatches(monkeypatch):
    from tvm.relax.dpl import is_op, wildcard
    from nm_tvm.target.backend import operators as ops_mod
    monkeypatch.setattr(ops_mod, "OPERATORS", [])
    check = lambda ctx: True  # noqa: E731
    lower = lambda comp, hw, layer_id: ("lowered", layer_id)  # noqa: E731
    assert ops_mod.accelerator_op("mm", "relax.matmul", check,
                                  gemm_anchor=lambda: is_op("relax.matmul")(wildcard(),
                                                                           wildcard()))(lower) \
        is lower
    pat = is_op("relax.nn.relu")(wildcard())
    ops_mod.accelerator_op("r", "relax.nn.relu", check, pattern=pat)(lower)
    ops_mod.accelerator_op("e", "relax.exp", check, epilogues=True)(lower)
    names = [op.name for op in ops_mod.OPERATORS]
    assert names == ["mm", "r", "e"] and ops_mod.OPERATORS[0].relax_op == "relax.matmul"
    assert len(ops_mod.OPERATORS[0].patterns) == 8
    assert [p.name for p in ops_mod.OPERATORS[1].patterns] == ["nm.r"]
    assert ops_mod.OPERATORS[1].patterns[0].pattern.same_as(pat)
    assert [p.name for p in ops_mod.OPERATORS[2].patterns] == ["nm.e_relu", "nm.e_pwl", "nm.e"]
    assert all(p.check is not None for op in ops_mod.OPERATORS for p in op.patterns)
    assert [p.name for p in ops_mod.pattern_table()][:2] == ["nm.mm_bias_residual_relu",
                                                             "nm.mm_bias_residual"]

    class Comp:
        name = "nm.x"
        anchor = relax.op.exp(relax.Var("v", relax.TensorType((2,), "float32")))

    assert ops_mod.lower_composite(Comp(), None, 5) == ("lowered", 5)
    Comp.anchor = relax.op.log(Comp.anchor)
    with pytest.raises(cg.CodegenError, match="nm.x: no codegen for relax.log"):
        ops_mod.lower_composite(Comp(), None, 0)


def test_verify_gemm_only_lists_host_compute():
    from nm_tvm.record import CompileRecord
    from nm_tvm.target.backend import NotGemmOnlyError, VerifyGemmOnly, host_ops
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((2, 3), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            r = bb.emit(relax.op.reshape(x, (3, 2)), name_hint="flat")
            e = bb.emit(relax.op.exp(r), name_hint="ex")
            f = bb.emit(relax.op.flatten(e), name_hint="fl")
            out = bb.emit_output(relax.op.squeeze(bb.emit(relax.op.expand_dims(f, 0)), [0]))
        bb.emit_func_output(out)
    mod = bb.get()
    assert host_ops(mod) == [("binding 'ex'", "relax.exp")]
    record = CompileRecord()
    assert VerifyGemmOnly(strict=False, record=record)(mod).same_as(mod)
    assert record.host_ops == ["binding 'ex':relax.exp"]
    with pytest.raises(NotGemmOnlyError, match=r"^1 operator\(s\) are not supported by the "
                                               r"accelerator: relax.exp \(binding 'ex'\)\. "
                                               r"Pass strict=False"):
        VerifyGemmOnly()(mod)


def test_max_pool_single_padded_image_waits_for_its_copy(hw):
    """One image: the first window view reads rows the last padding copy stores, so it must
    wait for that STORE (check_tokens)."""
    x = np.random.default_rng(12).standard_normal((1, 1, 5, 6)).astype(F32)
    acc = cg.max_pool2d_program(hw, 0, x.shape, (2, 2), (1, 1), (1, 1, 0, 0), (1, 1))
    xp = np.pad(x, ((0, 0), (0, 0), (1, 0), (1, 0)), constant_values=-np.inf)
    ref = np.maximum(np.maximum(xp[..., :-1, :-1], xp[..., 1:, :-1]),
                     np.maximum(xp[..., :-1, 1:], xp[..., 1:, 1:]))
    np.testing.assert_array_equal(run(acc, x), ref)
