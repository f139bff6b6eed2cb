"""GATHER (indexed row DMA) and LOAD from integer DRAM regions, against numpy: the embedding
lookup's numerics, index wrapping and errors, typed regions, counters and timing."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from nm_tvm.target import simulator
from nm_tvm.target.isa import ElemType, MachineParams, Mem, Op, ProgramBuilder, Queue, \
    RegionKind, bit

F32 = np.float32
DIM = 4


def machine(dtype="float32", bw=16, lat=10):
    return MachineParams(dim=DIM, sp_rows=64, acc_rows=64, pwl_entries=16, operand_dtype=dtype,
                         dram_bytes=1 << 20, dram_bw=bw, dram_latency=lat)


def gather_program(table_shape, n_idx, index_type=ElemType.int64, dtype="float32",
                   cols=None, mem=Mem.SCRATCHPAD, table_rows=None):
    """table (const, fp32) [V, D<=DIM], indices [n_idx] -> out [n_idx, D] via GATHER + STORE."""
    v, d = table_shape
    cols = d if cols is None else cols
    b = ProgramBuilder(machine(dtype))
    table = b.region(v * d * 4)
    idx = b.region(n_idx * (8 if index_type == ElemType.int64 else 4), RegionKind.ARGUMENT,
                   index_type)
    out = b.region(n_idx * d * 4)
    b.emit(Op.GATHER, signal=bit(Queue.STORE), dst_mem=mem, dst_row=0, table_addr=table,
           table_rows=v if table_rows is None else table_rows, row_stride=d * 4, index_addr=idx,
           rows=n_idx, cols=cols)
    b.emit(Op.STORE, wait=bit(Queue.LOAD), src_mem=mem, src_row=0, dram_addr=out, rows=n_idx,
           cols=cols, row_stride=d * 4, col_stride=4)
    return b


def run(builder, args):
    simulator.take_stats()
    out = simulator.run_program(builder.encode(), args)
    (stats,) = simulator.take_stats()
    return out, stats


@pytest.mark.parametrize("index_type,np_type", [(ElemType.int64, np.int64),
                                                (ElemType.int32, np.int32)])
def test_gather_rows_match_numpy_take(index_type, np_type, rng):
    table = rng.standard_normal((9, 3)).astype(F32)
    idx = np.array([0, 8, 3, -1, -9, 3], np_type)
    out, stats = run(gather_program(table.shape, len(idx), index_type),
                     [table, idx, np.zeros((len(idx), 3), F32)])
    np.testing.assert_array_equal(out[2], np.take(table, idx, axis=0))
    assert stats["n_gather"] == 1
    idx_bytes = len(idx) * np.dtype(np_type).itemsize
    assert stats["dram_read_bytes"] == idx_bytes + len(idx) * 3 * 4
    assert stats["dram_write_bytes"] == len(idx) * 3 * 4


def test_gather_rounds_to_bf16_into_a_bf16_scratchpad(rng):
    table = rng.standard_normal((5, 4)).astype(F32)
    idx = np.array([4, 1, 1], np.int64)
    out, _ = run(gather_program(table.shape, 3, dtype="bfloat16"),
                 [table, idx, np.zeros((3, 4), F32)])
    want = table[idx].astype(ml_dtypes.bfloat16).astype(F32)
    np.testing.assert_array_equal(out[2], want)
    # into the accumulator: fp32, not rounded
    out, _ = run(gather_program(table.shape, 3, dtype="bfloat16", mem=Mem.ACCUMULATOR),
                 [table, idx, np.zeros((3, 4), F32)])
    np.testing.assert_array_equal(out[2], table[idx])


@pytest.mark.parametrize("bad", [9, -10, 2**40])
def test_gather_index_out_of_range_is_named(bad, rng):
    table = rng.standard_normal((9, 3)).astype(F32)
    idx = np.array([1, bad], np.int64)
    with pytest.raises(ValueError, match=rf"index 1 of 2 is {bad}, outside \[-9, 9\)"):
        run(gather_program(table.shape, 2), [table, idx, np.zeros((2, 3), F32)])


def test_gather_cost_is_index_stream_then_one_burst_per_row():
    b = gather_program((10, 4), 6)
    stats = simulator.estimate(b.encode())
    bw, lat = 16, 10
    gather_busy = -(-6 * 8 // bw) + 6 * -(-4 * 4 // bw)
    store_busy = -(-6 * 4 * 4 // bw)
    assert stats["load_busy"] == gather_busy
    # the store waits for the gathered rows to land: two latencies (indices, then rows)
    assert stats["cycles"] == gather_busy + 2 * lat + store_busy + lat


def test_gather_checks_name_the_operand(rng):
    table = rng.standard_normal((4, 3)).astype(F32)
    with pytest.raises(ValueError, match="table reads DRAM bytes"):
        run(gather_program((4, 3), 2, table_rows=5),
            [table, np.zeros(2, np.int64), np.zeros((2, 3), F32)])
    # indices in a float32 region
    b = ProgramBuilder(machine())
    t = b.region(48)
    i = b.region(8)
    o = b.region(24)
    b.emit(Op.GATHER, dst_mem=Mem.SCRATCHPAD, dst_row=0, table_addr=t, table_rows=4,
           row_stride=12, index_addr=i, rows=2, cols=3)
    with pytest.raises(ValueError, match="holds float32 elements; indices must be int32 or int64"):
        run(b, [table, np.zeros(2, F32), np.zeros((2, 3), F32)])
    del o


def test_typed_region_binding_is_checked(rng):
    table = rng.standard_normal((4, 3)).astype(F32)
    b = gather_program((4, 3), 2)
    with pytest.raises(ValueError, match="is float32 but is bound to region 1 of int64"):
        run(b, [table, np.zeros(2, F32), np.zeros((2, 3), F32)])
    with pytest.raises(ValueError, match="is int32 but is bound to region 1 of int64"):
        run(b, [table, np.zeros(2, np.int32), np.zeros((2, 3), F32)])
    with pytest.raises(ValueError, match=r"must be float32, got dtype \(code 0, bits 16"):
        run(b, [table, np.zeros(2, np.int64), np.zeros((2, 3), np.int16)])


def test_only_dma_reads_and_writes_touch_integer_regions():
    b = ProgramBuilder(machine())
    i = b.region(16, RegionKind.ARGUMENT, ElemType.int64)
    b.emit(Op.LOAD_PWL, table_base=0, dram_addr=i, n_segments=1)
    with pytest.raises(ValueError, match="reads DRAM region 0, which holds int64 elements; "
                                         "only LOAD"):
        run(b, [np.zeros(2, np.int64)])


@pytest.mark.parametrize("np_type,etype", [(np.int64, ElemType.int64), (np.int32, ElemType.int32)])
def test_load_converts_integers_to_nearest_fp32(np_type, etype):
    """Cast by DMA: integers to the nearest fp32 (ties to even), as numpy's astype does."""
    values = np.array([0, 1, -7, 2**24 + 1, 2**24 + 3, -(2**31), 2**31 - 1, 123456789], np_type)
    if np_type == np.int64:
        values = np.concatenate([values, np.array([2**62 + 2**38, -(2**63)], np.int64)])
    n = len(values)
    b = ProgramBuilder(machine())
    src = b.region(values.nbytes, RegionKind.ARGUMENT, etype)
    out = b.region(n * 4)
    elem = values.itemsize
    rows = -(-n // DIM)
    padded = np.zeros(rows * DIM, np_type)
    padded[:n] = values
    for r in range(rows):
        cols = min(DIM, n - r * DIM)
        b.emit(Op.LOAD, signal=bit(Queue.STORE), dst_mem=Mem.SCRATCHPAD, dst_row=r,
               dram_addr=src + r * DIM * elem, rows=1, cols=cols, row_stride=DIM * elem,
               col_stride=elem)
        b.emit(Op.STORE, wait=bit(Queue.LOAD), src_mem=Mem.SCRATCHPAD, src_row=r,
               dram_addr=out + r * DIM * 4, rows=1, cols=cols, row_stride=DIM * 4, col_stride=4)
    res, stats = run(b, [values, np.zeros(n, F32)])
    np.testing.assert_array_equal(res[1], values.astype(F32))
    assert stats["dram_read_bytes"] == values.nbytes


def test_integer_strides_must_be_whole_elements():
    b = ProgramBuilder(machine())
    src = b.region(32, RegionKind.ARGUMENT, ElemType.int64)
    b.emit(Op.LOAD, dst_mem=Mem.SCRATCHPAD, dst_row=0, dram_addr=src + 4, rows=1, cols=2,
           row_stride=16, col_stride=8)
    with pytest.raises(ValueError, match="int64 region 0 at byte offset 4"):
        run(b, [np.zeros(4, np.int64)])


def test_region_dtype_word_is_validated():
    b = ProgramBuilder(machine())
    b.region(16)
    words = b.encode()
    from nm_tvm.target.isa import HEADER_WORDS, REGION_INDEX
    words[HEADER_WORDS + REGION_INDEX["dtype"]] = 7
    with pytest.raises(ValueError, match="dtype 7 must be 0"):
        simulator.run_program(words, [np.zeros(4, F32)])
    b = ProgramBuilder(machine())
    b.region(12, RegionKind.ARGUMENT, ElemType.int64)
    with pytest.raises(ValueError, match="size 12 must be a positive multiple of 8"):
        simulator.run_program(b.encode(), [np.zeros(1, np.int64)])
