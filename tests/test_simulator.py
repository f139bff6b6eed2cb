"""The C++ simulator against hand-written programs: numerics, LOOP_GEMM, errors, timing."""
from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest

from nm_tvm.target import simulator
from nm_tvm.target.isa import (
    INSTR_WORDS,
    STAT_FIELDS,
    MachineParams,
    Mem,
    Op,
    ProgramBuilder,
    Queue,
    RegionKind,
    VecOp,
    bit,
)

F32 = np.float32
LOAD, COMPUTE, STORE = bit(Queue.LOAD), bit(Queue.COMPUTE), bit(Queue.STORE)
RELU_TABLE = np.array([[-np.inf, 0, 0], [0, 1, 0]], F32)


def machine(dim=4, sp_rows=256, acc_rows=256, pwl_entries=16, dtype="float32", bw=16, lat=10):
    return MachineParams(dim=dim, sp_rows=sp_rows, acc_rows=acc_rows, pwl_entries=pwl_entries,
                         operand_dtype=dtype, dram_bytes=1 << 24, dram_bw=bw, dram_latency=lat)


def run(builder: ProgramBuilder, args):
    """Run a program; return (region arrays after the run, the run's statistics)."""
    simulator.take_stats()
    out = simulator.run_program(builder.encode(), [np.asarray(a) for a in args])
    records = simulator.take_stats()
    assert len(records) == 1
    return out, records[0]


def bf16(x):
    return np.asarray(x, F32).astype(ml_dtypes.bfloat16).astype(F32)


def gemm_reference(a, b, acc=None):
    """fp32(acc + fp32(a * b)) in ascending k: what the accelerator computes, bit for bit."""
    acc = np.zeros((a.shape[0], b.shape[1]), F32) if acc is None else acc.astype(F32).copy()
    for k in range(a.shape[1]):
        acc = acc + np.outer(a[:, k], b[k, :])
    return acc


def pwl_reference(x, table):
    seg = np.searchsorted(table[1:, 0], x, side="right")
    with np.errstate(invalid="ignore"):
        return (table[seg, 1] * x).astype(F32) + table[seg, 2]


def store_acc(b, row, rows, cols, addr, wait=COMPUTE):
    b.emit(Op.STORE, wait=wait, src_mem=Mem.ACCUMULATOR, src_row=row, dram_addr=addr, rows=rows,
           cols=cols, row_stride=cols * 4, col_stride=4)


# --------------------------------------------------------------------------- LOAD / STORE
def test_load_strided_padded_then_store_strided(rng):
    b = ProgramBuilder(machine())
    x = rng.standard_normal((6, 5)).astype(F32)
    rx = b.region(x.nbytes)
    ro = b.region(8 * 3 * 4)
    # Rows 1..3 read columns 1..3 of x transposed (row r = column 1+r, elements rows 2..4);
    # one padding row before, two after; columns 3..DIM-1 zero.
    b.emit(Op.LOAD, signal=STORE, dst_mem=Mem.SCRATCHPAD, dst_row=10, dram_addr=rx + (2 * 5 + 1) * 4,
           rows=6, cols=3, row_stride=4, col_stride=5 * 4, pad_before=1, pad_after=2)
    # Store the 6 x 4 block transposed into an 8 x 3 output (rows 0..3 only), column-major.
    b.emit(Op.STORE, wait=LOAD, src_mem=Mem.SCRATCHPAD, src_row=10, dram_addr=ro, rows=3,
           cols=4, row_stride=4, col_stride=3 * 4)
    out0 = np.full((8, 3), 7, F32)
    (_, out), stats = run(b, [x, out0])
    block = np.zeros((6, 4), F32)
    block[1:4, :3] = x[2:5, 1:4].T
    expect = out0.copy()
    expect[:4, :] = block[:3, :].T
    np.testing.assert_array_equal(out, expect)
    assert stats["dram_read_bytes"] == 3 * 3 * 4  # padding rows and columns are not DRAM reads
    assert stats["dram_write_bytes"] == 3 * 4 * 4
    assert stats["sp_write_bytes"] == 6 * 4 * 4
    assert stats["n_load"] == 1 and stats["n_store"] == 1


def test_load_broadcast_row_into_accumulator(rng):
    b = ProgramBuilder(machine())
    v = rng.standard_normal(4).astype(F32)
    rv, ro = b.region(16), b.region(5 * 16)
    b.emit(Op.LOAD, signal=STORE, dst_mem=Mem.ACCUMULATOR, dst_row=3, dram_addr=rv, rows=5, cols=4,
           row_stride=0, col_stride=4)
    store_acc(b, 3, 5, 4, ro, wait=LOAD)
    (_, out), stats = run(b, [v, np.zeros((5, 4), F32)])
    np.testing.assert_array_equal(out, np.tile(v, (5, 1)))
    assert stats["dram_read_bytes"] == 5 * 16  # every broadcast row touches DRAM
    assert stats["acc_write_bytes"] == 5 * 16


# ----------------------------------------------------------------------------------- GEMM
def _gemm_program(a, bm, acc0, m, k, n, accumulate, dtype="float32"):
    dim = 4
    b = ProgramBuilder(machine(dim=dim, dtype=dtype))
    ra, rb, rc, ro = (b.region(t.nbytes) for t in (a, bm, acc0, acc0))
    b.emit(Op.LOAD, dst_mem=Mem.SCRATCHPAD, dst_row=0, dram_addr=ra, rows=a.shape[0],
           cols=a.shape[1], row_stride=a.shape[1] * 4, col_stride=4)
    b.emit(Op.LOAD, dst_mem=Mem.SCRATCHPAD, dst_row=8, dram_addr=rb, rows=bm.shape[0],
           cols=bm.shape[1], row_stride=bm.shape[1] * 4, col_stride=4)
    b.emit(Op.LOAD, signal=COMPUTE, dst_mem=Mem.ACCUMULATOR, dst_row=2, dram_addr=rc,
           rows=acc0.shape[0], cols=dim, row_stride=dim * 4, col_stride=4)
    b.emit(Op.GEMM, wait=LOAD, signal=STORE, a_row=0, b_row=8, c_row=2, m=m, k=k, n=n,
           accumulate=accumulate)
    store_acc(b, 2, acc0.shape[0], dim, ro)
    return b


@pytest.mark.parametrize("accumulate", [0, 1])
@pytest.mark.parametrize("k,n", [(4, 4), (3, 2), (1, 1)])
def test_gemm_matches_fp32_ascending_k(rng, accumulate, k, n):
    m = 6
    a = rng.standard_normal((m, 4)).astype(F32)
    bm = rng.standard_normal((4, 4)).astype(F32)
    acc0 = rng.standard_normal((m, 4)).astype(F32)
    (*_, out), stats = run(_gemm_program(a, bm, acc0, m, k, n, accumulate),
                           [a, bm, acc0, np.zeros_like(acc0)])
    expect = acc0.copy()
    expect[:, :n] = gemm_reference(a[:, :k], bm[:k, :n], acc0[:, :n] if accumulate else None)
    np.testing.assert_array_equal(out, expect)  # columns >= n untouched
    assert stats["macs"] == m * k * n
    assert stats["sp_read_bytes"] == (m * k + k * n) * 4
    assert stats["compute_busy"] == k + m + 2 * 4 - 2


def test_gemm_bf16_operands(rng):
    m = 5
    a = rng.standard_normal((m, 4)).astype(F32)
    bm = rng.standard_normal((4, 4)).astype(F32)
    acc0 = np.zeros((m, 4), F32)
    (*_, out), stats = run(_gemm_program(a, bm, acc0, m, 4, 4, 0, dtype="bfloat16"),
                           [a, bm, acc0, acc0])
    np.testing.assert_array_equal(out, gemm_reference(bf16(a), bf16(bm)))
    assert not np.array_equal(out, gemm_reference(a, bm))
    assert stats["sp_read_bytes"] == (m * 4 + 16) * 2  # bf16 scratchpad elements


# ------------------------------------------------------------------------------------ VEC
@pytest.mark.parametrize("op,fn", [(VecOp.ADD, np.add), (VecOp.MUL, np.multiply),
                                   (VecOp.MAX, np.maximum)])
@pytest.mark.parametrize("broadcast", [0, 1])
def test_vec(rng, op, fn, broadcast):
    x = rng.standard_normal((3, 4)).astype(F32)
    y = rng.standard_normal((3, 4)).astype(F32)
    x[0, 0] = np.nan
    b = ProgramBuilder(machine())
    rx, ry, ro = b.region(48), b.region(48), b.region(48)
    b.emit(Op.LOAD, dst_mem=Mem.ACCUMULATOR, dst_row=0, dram_addr=rx, rows=3, cols=4,
           row_stride=16, col_stride=4)
    b.emit(Op.LOAD, signal=COMPUTE, dst_mem=Mem.ACCUMULATOR, dst_row=10, dram_addr=ry, rows=3,
           cols=4, row_stride=16, col_stride=4)
    # In place: dst == a.
    b.emit(Op.VEC, wait=LOAD, signal=STORE, op=op, dst_row=0, a_row=0, b_row=10 + broadcast,
           rows=3, b_broadcast=broadcast)
    store_acc(b, 0, 3, 4, ro)
    (*_, out), stats = run(b, [x, y, np.zeros((3, 4), F32)])
    expect = fn(x, y[1:2] if broadcast else y)
    np.testing.assert_array_equal(out, expect)
    assert stats["vec_elements"] == 12 and stats["compute_busy"] == 3


# ------------------------------------------------------------------------------------ PWL
FOUR_SEGMENTS = np.array([[0, -0.5, -1], [-1, 0.25, 0], [0.5, 2, -0.75], [0.5, -1, 3]], F32)


@pytest.mark.parametrize("table", [RELU_TABLE, FOUR_SEGMENTS], ids=["relu", "4seg"])
def test_load_pwl_and_pwl(rng, table):
    x = (rng.standard_normal((2, 4)) * 2).astype(F32)
    x[0, :4] = [np.nan, -1.0, 0.5, 0.0]  # NaN and exact breakpoints
    b = ProgramBuilder(machine())
    rt, rx, ro = b.region(table.nbytes), b.region(32), b.region(32)
    b.emit(Op.LOAD_PWL, table_base=3, dram_addr=rt, n_segments=len(table))
    b.emit(Op.LOAD, signal=COMPUTE, dst_mem=Mem.ACCUMULATOR, dst_row=0, dram_addr=rx, rows=2,
           cols=4, row_stride=16, col_stride=4)
    b.emit(Op.PWL, wait=LOAD, signal=STORE, dst_row=5, src_row=0, rows=2, table_base=3,
           n_segments=len(table))
    store_acc(b, 5, 2, 4, ro)
    (*_, out), stats = run(b, [table, x, np.zeros((2, 4), F32)])
    expect = pwl_reference(x, table)
    np.testing.assert_array_equal(out, expect)
    assert np.isnan(out[0, 0])
    assert stats["pwl_elements"] == 8 and stats["n_load_pwl"] == 1
    assert stats["compute_busy"] == 2 + math.ceil(math.log2(len(table)))


# --------------------------------------------------------------------------- bf16 rounding
def _roundtrip_scratchpad(values, dtype):
    n = len(values)
    b = ProgramBuilder(machine(dim=1, sp_rows=1024, dtype=dtype))
    rx, ro = b.region(4 * n), b.region(4 * n)
    b.emit(Op.LOAD, signal=STORE, dst_mem=Mem.SCRATCHPAD, dst_row=0, dram_addr=rx, rows=n,
           cols=1, row_stride=4, col_stride=4)
    b.emit(Op.STORE, wait=LOAD, src_mem=Mem.SCRATCHPAD, src_row=0, dram_addr=ro, rows=n, cols=1,
           row_stride=4, col_stride=4)
    (_, out), _ = run(b, [np.asarray(values, F32), np.zeros(n, F32)])
    return out


def test_bf16_round_to_nearest_even(rng):
    special = [1 + 2**-9, 1 + 2**-8, 1 + 3 * 2**-8, -(1 + 3 * 2**-8), 3.4e38, np.inf,
               -np.inf, np.nan, 0.0, -0.0, 1e-40]
    out = _roundtrip_scratchpad(special, "bfloat16")
    assert out[0] == 1.0  # below half an ulp
    assert out[1] == 1.0  # tie -> even mantissa
    assert out[2] == 1 + 2**-6  # tie -> even mantissa (upwards)
    assert out[3] == -(1 + 2**-6)
    assert out[4] == np.inf  # rounds past the largest bf16
    assert np.isnan(out[7])
    values = np.concatenate([special, rng.standard_normal(500) * 100]).astype(F32)
    np.testing.assert_array_equal(_roundtrip_scratchpad(values, "bfloat16"), bf16(values))
    np.testing.assert_array_equal(_roundtrip_scratchpad(values, "float32"), values)


# ------------------------------------------------------------------------------ LOOP_GEMM
def loop_gemm(rng, *, M, K, N, dim=4, tiles=(4, 1, 1), dtype="float32", bias=False, d=False,
              act=False, transposed_b=False, sp_rows=256, acc_rows=256):
    """Run one LOOP_GEMM; return (C, expected C, stats)."""
    a = rng.standard_normal((M, K)).astype(F32)
    bm = rng.standard_normal((K, N)).astype(F32)
    bias_v = rng.standard_normal(N).astype(F32)
    d_m = rng.standard_normal((M, N)).astype(F32)
    b = ProgramBuilder(machine(dim=dim, dtype=dtype, sp_rows=sp_rows, acc_rows=acc_rows))
    args = []

    def region(x):
        args.append(np.ascontiguousarray(x))
        return b.region(x.nbytes)

    ra = region(a)
    if transposed_b:  # B stored as N x K
        rb, b_rs, b_cs = region(bm.T), 4, K * 4
    else:
        rb, b_rs, b_cs = region(bm), N * 4, 4
    rbias = region(bias_v) if bias else 0
    rd = region(d_m) if d else 0
    if act:
        b.emit(Op.LOAD_PWL, table_base=2, dram_addr=region(RELU_TABLE), n_segments=2)
    rc = region(np.zeros((M, N), F32))
    tm, tk, tn = tiles
    b.emit(Op.LOOP_GEMM, a_addr=ra, a_row_stride=K * 4, a_col_stride=4, b_addr=rb,
           b_row_stride=b_rs, b_col_stride=b_cs, c_addr=rc, c_row_stride=N * 4, c_col_stride=4,
           d_addr=rd, d_row_stride=N * 4 if d else 0, d_col_stride=4 if d else 0,
           bias_addr=rbias, M=M, K=K, N=N, tile_m=tm, tile_k=tk, tile_n=tn, act_table=2,
           act_segments=2 if act else 0, sp_base=3, acc_base=5, has_d=int(d),
           has_bias=int(bias), has_act=int(act))
    out, stats = run(b, args)
    if dtype == "bfloat16":
        a, bm = bf16(a), bf16(bm)
    expect = gemm_reference(a, bm, d_m if d else None)
    if bias:
        expect = expect + bias_v
    if act:
        expect = pwl_reference(expect, RELU_TABLE)
    return out[-1], expect, stats


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("M,K,N,tiles", [
    (16, 16, 16, (8, 2, 2)),
    (37, 23, 19, (8, 2, 2)),     # ragged in all three
    (37, 23, 19, (1, 1, 1)),     # tiny tiles: one row, one DIM block
    (5, 3, 2, (8, 4, 4)),        # tiles larger than the problem
    (40, 9, 33, (16, 1, 3)),
])
@pytest.mark.parametrize("extras", ["plain", "bias", "d", "bias+d+act"])
def test_loop_gemm_matches_reference(rng, dtype, M, K, N, tiles, extras):
    c, expect, stats = loop_gemm(rng, M=M, K=K, N=N, tiles=tiles, dtype=dtype,
                                 bias="bias" in extras, d="d" in extras.split("+"),
                                 act="act" in extras)
    np.testing.assert_array_equal(c, expect)  # same order of fp32 operations: bit exact
    assert stats["macs"] == M * K * N
    assert stats["n_loop_gemm"] == 1
    assert stats["dram_write_bytes"] == M * N * 4


@pytest.mark.parametrize("act", [False, True])
def test_loop_gemm_transposed_b_with_one_k_group(rng, act):
    # One K group with several N groups: the single-buffered bias rows need the extra token.
    c, expect, _ = loop_gemm(rng, M=9, K=4, N=21, tiles=(4, 1, 1), bias=True, act=act,
                             transposed_b=True)
    np.testing.assert_array_equal(c, expect)


def test_loop_gemm_overlaps_engines(rng):
    _, _, stats = loop_gemm(rng, M=64, K=64, N=64, dim=8, tiles=(16, 2, 2), sp_rows=1024,
                            acc_rows=256)
    busy = stats["load_busy"] + stats["compute_busy"] + stats["store_busy"]
    assert stats["cycles"] < busy
    assert stats["cycles"] < stats["load_busy"] + stats["compute_busy"]
    assert stats["n_gemm"] > 0 and stats["n_load"] > 0 and stats["n_store"] > 0


def test_loop_gemm_is_deterministic(rng):
    first = loop_gemm(np.random.default_rng(7), M=21, K=13, N=11, tiles=(4, 2, 1), bias=True,
                      d=True, act=True)
    second = loop_gemm(np.random.default_rng(7), M=21, K=13, N=11, tiles=(4, 2, 1), bias=True,
                       d=True, act=True)
    np.testing.assert_array_equal(first[0], second[0])
    assert first[2] == second[2]


# ------------------------------------------------------------------------------- timing
def test_load_cycles_are_latency_plus_bandwidth():
    b = ProgramBuilder(machine(bw=16, lat=25))
    rx = b.region(4 * 5 * 4)
    b.emit(Op.LOAD, dst_mem=Mem.SCRATCHPAD, dst_row=0, dram_addr=rx, rows=7, cols=3,
           row_stride=16, col_stride=4, pad_before=2)
    _, stats = run(b, [np.zeros((5, 4), F32)])
    assert stats["cycles"] == 25 + math.ceil(5 * 3 * 4 / 16)  # padding rows are not DMA
    assert stats["load_busy"] == math.ceil(5 * 3 * 4 / 16)  # the engine is free after sending


def test_double_buffered_loads_overlap_gemms(rng):
    """Hand-written double buffering: the load of tile i+1 runs during the GEMM of tile i."""
    dim, tiles, m = 4, 4, 32
    a = rng.standard_normal((tiles, m, dim)).astype(F32)
    w = rng.standard_normal((dim, dim)).astype(F32)
    b = ProgramBuilder(machine(dim=dim, bw=4, lat=5))
    ra, rw, ro = b.region(a.nbytes), b.region(w.nbytes), b.region(a.nbytes)
    b.emit(Op.LOAD, dst_mem=Mem.SCRATCHPAD, dst_row=0, dram_addr=rw, rows=dim, cols=dim,
           row_stride=dim * 4, col_stride=4)
    for i in range(tiles):
        buf = dim + (i % 2) * m
        b.emit(Op.LOAD, wait=COMPUTE if i >= 2 else 0, signal=COMPUTE, dst_mem=Mem.SCRATCHPAD,
               dst_row=buf, dram_addr=ra + i * m * dim * 4, rows=m, cols=dim,
               row_stride=dim * 4, col_stride=4)
        b.emit(Op.GEMM, wait=LOAD, signal=(LOAD if i + 2 < tiles else 0) |
               (STORE if i == tiles - 1 else 0), a_row=buf, b_row=0, c_row=i * m, m=m, k=dim,
               n=dim, accumulate=0)
    store_acc(b, 0, tiles * m, dim, ro)
    (*_, out), stats = run(b, [a, w, np.zeros_like(a)])
    for i in range(tiles):
        np.testing.assert_array_equal(out[i], gemm_reference(a[i], w))
    lat, load_w, load_a = 5, dim * dim * 4 // 4, m * dim * 4 // 4  # DMA: latency, transfers
    gemm, store = dim + m + 2 * dim - 2, 5 + tiles * m * dim * 4 // 4
    assert stats["load_busy"] == load_w + tiles * load_a
    assert stats["compute_busy"] == tiles * gemm
    # Loads are the bottleneck and stream back to back; only the last tile's latency, its GEMM
    # and the store trail.
    assert stats["cycles"] == load_w + tiles * load_a + lat + gemm + store
    serial = load_w + lat + tiles * (load_a + lat + gemm) + store
    assert stats["cycles"] < serial
    assert stats["cycles"] < stats["load_busy"] + stats["compute_busy"] + stats["store_busy"]


def test_take_stats_collects_each_run_and_clears(rng):
    simulator.take_stats()
    b = ProgramBuilder(machine(), layer_id=42)
    b.emit(Op.VEC, op=VecOp.ADD, dst_row=0, a_row=0, b_row=0, rows=2)
    prog = b.encode()
    simulator.run_program(prog, [])
    simulator.run_program(prog, [])
    records = simulator.take_stats()
    assert [r["layer_id"] for r in records] == [42, 42]
    assert list(records[0]) == list(STAT_FIELDS)
    assert records[0]["cycles"] == 2 and records[0]["n_vec"] == 1
    assert simulator.take_stats() == []


# ------------------------------------------------------------------------------- errors
def expect_error(builder_or_program, args, *fragments):
    program = (builder_or_program.encode() if isinstance(builder_or_program, ProgramBuilder)
               else builder_or_program)
    with pytest.raises(ValueError) as info:
        simulator.run_program(program, args)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)
    return str(info.value)


def test_error_scratchpad_row_out_of_range():
    b = ProgramBuilder(machine(sp_rows=256))
    b.emit(Op.VEC, op=0, dst_row=0, a_row=0, b_row=0, rows=1)
    b.emit(Op.GEMM, a_row=250, b_row=0, c_row=0, m=16, k=4, n=4)
    expect_error(b, [], "instruction 1 (GEMM): a_row 250 + m 16 exceeds scratchpad rows 256")


def test_error_dram_access_outside_regions():
    b = ProgramBuilder(machine())
    r = b.region(64)
    b.emit(Op.LOAD, dst_mem=0, dst_row=0, dram_addr=r + 32, rows=3, cols=4, row_stride=16,
           col_stride=4)
    expect_error(b, [np.zeros(16, F32)], "instruction 0 (LOAD): reads DRAM bytes [32, 80)",
                 "not inside one region (region 0 is [0, 64))")


def test_error_loop_gemm_buffers_do_not_fit(rng):
    with pytest.raises(ValueError, match=r"instruction 0 \(LOOP_GEMM\): buffers do not fit"):
        loop_gemm(rng, M=64, K=64, N=64, tiles=(64, 4, 4), sp_rows=256)


def test_error_in_loop_gemm_micro_op_names_it(rng):
    """A PWL table that is unsorted only in combination fails inside the expansion."""
    b = ProgramBuilder(machine())
    table = np.array([[-np.inf, 0, 0], [5, 1, 0]], F32)
    tail = np.array([[1, 1, 0]], F32)
    rt, rt2, ra, rb, rc = (b.region(n) for n in (24, 12, 64, 64, 64))
    b.emit(Op.LOAD_PWL, table_base=0, dram_addr=rt, n_segments=2)
    b.emit(Op.LOAD_PWL, table_base=2, dram_addr=rt2, n_segments=1)
    b.emit(Op.LOOP_GEMM, a_addr=ra, a_row_stride=16, a_col_stride=4, b_addr=rb, b_row_stride=16,
           b_col_stride=4, c_addr=rc, c_row_stride=16, c_col_stride=4, M=4, K=4, N=4,
           tile_m=4, tile_k=1, tile_n=1, act_table=0, act_segments=3, has_act=1)
    c0 = np.full((4, 4), 3, F32)
    msg = expect_error(b, [table, tail, np.ones((4, 4), F32), np.ones((4, 4), F32), c0],
                       "instruction 2 (LOOP_GEMM) micro-op", "(PWL)", "non-decreasing")
    assert "race" not in msg


def test_error_deadlock():
    b = ProgramBuilder(machine())
    b.emit(Op.GEMM, wait=LOAD, a_row=0, b_row=0, c_row=0, m=1, k=1, n=1)
    expect_error(b, [], "deadlock: instruction 0 (GEMM) waits for a token from the load queue "
                        "that no earlier instruction signalled")


def test_error_token_signalled_later_is_a_deadlock():
    b = ProgramBuilder(machine())
    b.emit(Op.GEMM, wait=LOAD, a_row=0, b_row=0, c_row=0, m=1, k=1, n=1)
    b.emit(Op.LOAD_PWL, signal=COMPUTE, table_base=0, dram_addr=b.region(12), n_segments=1)
    expect_error(b, [np.zeros(3, F32)], "deadlock: instruction 0 (GEMM)")


def test_error_race_gemm_reads_rows_still_loading():
    b = ProgramBuilder(machine())
    r = b.region(16 * 4 * 4)
    b.emit(Op.LOAD, dst_mem=0, dst_row=40, dram_addr=r, rows=16, cols=4, row_stride=16,
           col_stride=4)
    b.emit(Op.GEMM, a_row=40, b_row=40, c_row=0, m=16, k=4, n=4)
    expect_error(b, [np.zeros((16, 4), F32)],
                 "race: instruction 1 (GEMM) reads scratchpad row 40 at cycle 0 before "
                 "instruction 0 (LOAD) finishes writing it at cycle", "add a dependency token")


def test_error_race_load_overwrites_rows_being_read():
    b = ProgramBuilder(machine())
    r = b.region(64)
    b.emit(Op.LOAD, signal=COMPUTE, dst_mem=0, dst_row=0, dram_addr=r, rows=4, cols=4,
           row_stride=16, col_stride=4)
    b.emit(Op.GEMM, wait=LOAD, a_row=0, b_row=0, c_row=0, m=4, k=4, n=4)
    b.emit(Op.LOAD, dst_mem=0, dst_row=2, dram_addr=r, rows=1, cols=4, row_stride=16,
           col_stride=4)
    expect_error(b, [np.zeros(16, F32)], "race: instruction 2 (LOAD) writes scratchpad row 2",
                 "before instruction 1 (GEMM) finishes reading it")


def test_error_mask_bit_of_own_queue():
    b = ProgramBuilder(machine())
    b.emit(Op.GEMM, signal=COMPUTE, a_row=0, b_row=0, c_row=0, m=1, k=1, n=1)
    expect_error(b, [], "instruction 0 (GEMM): signal mask 2", "own (compute) queue")


def test_error_bad_operands():
    b = ProgramBuilder(machine(dim=4))
    b.emit(Op.GEMM, a_row=0, b_row=0, c_row=0, m=1, k=5, n=1)
    expect_error(b, [], "instruction 0 (GEMM): k 5 out of range 1..4")
    p = ProgramBuilder(machine()).encode()
    prog = np.concatenate([p, np.zeros(INSTR_WORDS, np.int64)])
    prog[3], prog[16] = 1, 99
    expect_error(prog, [], "instruction 0 (opcode 99): unknown opcode 99")


def test_error_bad_magic_and_truncated_programs():
    b = ProgramBuilder(machine())
    b.emit(Op.VEC, op=0, dst_row=0, a_row=0, b_row=0, rows=1)
    prog = b.encode()
    bad = prog.copy()
    bad[0] = 0x1234
    expect_error(bad, [], "bad magic")
    expect_error(prog[:-5], [], "truncated")
    expect_error(prog[:7], [], "truncated")
    expect_error(np.zeros(0, np.int64), [], "truncated")
    huge = prog.copy()
    huge[3] = 1 << 62
    expect_error(huge, [], "truncated or corrupt")
    neg = prog.copy()
    neg[2] = -1
    expect_error(neg, [], "n_regions -1")
    expect_error(prog.astype(np.int32), [], "must be int64")


def test_error_wrong_tensor_size_dtype_count(rng):
    b = ProgramBuilder(machine())
    r = b.region(64)
    b.emit(Op.LOAD, dst_mem=0, dst_row=0, dram_addr=r, rows=4, cols=4, row_stride=16,
           col_stride=4)
    expect_error(b, [np.zeros(15, F32)], "has 60 bytes but is bound to region 0 of 64 bytes")
    expect_error(b, [np.zeros(16, np.float64)], "tensor argument 1 must be float32")
    expect_error(b, [], "1 argument regions but 0 tensors")


def test_error_leaves_outputs_untouched():
    b = ProgramBuilder(machine())
    r_in, r_out = b.region(64), b.region(64)
    b.emit(Op.LOAD, signal=STORE, dst_mem=1, dst_row=0, dram_addr=r_in, rows=4, cols=4,
           row_stride=16, col_stride=4)
    store_acc(b, 0, 4, 4, r_out, wait=LOAD)
    b.emit(Op.GEMM, a_row=0, b_row=0, c_row=300, m=1, k=1, n=1)  # rejected
    import tvm

    out = tvm.runtime.tensor(np.full(16, 5, F32), tvm.cpu())
    simulator.load()
    import tvm_ffi

    with pytest.raises(ValueError, match="instruction 2 \\(GEMM\\): c_row 300"):
        tvm_ffi.get_global_func("nm_accel.run")(tvm.runtime.tensor(b.encode(), tvm.cpu()),
                                                tvm.runtime.tensor(np.ones(16, F32), tvm.cpu()),
                                                out)
    np.testing.assert_array_equal(out.numpy(), np.full(16, 5, F32))


def test_scratch_regions_are_zero_filled_staging(rng):
    """STORE into a scratch region, LOAD it back (store -> load token), STORE to the output."""
    x = rng.standard_normal((2, 4)).astype(F32)
    b = ProgramBuilder(machine())
    rx, rs, ro = b.region(32), b.region(64, RegionKind.SCRATCH), b.region(64)
    b.emit(Op.LOAD, signal=STORE, dst_mem=1, dst_row=0, dram_addr=rx, rows=2, cols=4,
           row_stride=16, col_stride=4)
    store_acc(b, 0, 2, 4, rs, wait=LOAD)
    b.instrs[-1][2] = LOAD  # signal the load queue: the scratch data is in DRAM
    b.emit(Op.LOAD, wait=STORE, signal=STORE, dst_mem=1, dst_row=8, dram_addr=rs, rows=4,
           cols=4, row_stride=16, col_stride=4)
    store_acc(b, 8, 4, 4, ro, wait=LOAD)
    (_, out), _ = run(b, [x, np.zeros((4, 4), F32)])
    np.testing.assert_array_equal(out, np.concatenate([x, np.zeros((2, 4), F32)]))


def test_fuzzed_programs_never_crash(rng):
    """Random corruptions of a valid LOOP_GEMM program either run or raise ValueError."""
    b = ProgramBuilder(machine(dim=4, sp_rows=64, acc_rows=64))
    ra, rb, rc = b.region(256), b.region(256), b.region(256)
    b.emit(Op.LOAD_PWL, table_base=0, dram_addr=ra, n_segments=2)
    b.emit(Op.LOOP_GEMM, a_addr=ra, a_row_stride=32, a_col_stride=4, b_addr=rb, b_row_stride=32,
           b_col_stride=4, c_addr=rc, c_row_stride=32, c_col_stride=4, M=8, K=8, N=8,
           tile_m=4, tile_k=1, tile_n=1, act_segments=2, has_act=1)
    b.emit(Op.GEMM, signal=STORE, a_row=0, b_row=0, c_row=0, m=4, k=4, n=4)
    b.emit(Op.STORE, wait=COMPUTE, src_mem=1, src_row=0, dram_addr=rc, rows=4, cols=4, row_stride=16,
           col_stride=4)
    prog = b.encode()
    args = [np.zeros(64, F32)] * 3
    simulator.run_program(prog, args)
    specials = [0, 1, -1, 4, 3, 2**31, 2**62, -2**63, 2**63 - 1, 64, 255, 256]
    ok = 0
    for _ in range(400):
        p = prog.copy()
        for _ in range(rng.integers(1, 4)):
            i = rng.integers(len(p))
            p[i] = specials[rng.integers(len(specials))] if rng.random() < 0.7 else \
                rng.integers(-2**63, 2**63 - 1, dtype=np.int64)
        try:
            simulator.run_program(p, args)
            ok += 1
        except ValueError:
            pass
    simulator.take_stats()
    assert ok < 400
