"""Cycle model against closed-form expectations (docs/ISA.md, "Costs" and "Stalls")."""
from __future__ import annotations

import math

import numpy as np
import pytest

from nm_tvm.target import simulator
from nm_tvm.target.isa import MachineParams, Mem, Op, ProgramBuilder, Queue, bit
from test_simulator import gemm_reference

F32 = np.float32
LOAD, COMPUTE, STORE = bit(Queue.LOAD), bit(Queue.COMPUTE), bit(Queue.STORE)


def machine(dim=4, sp_rows=1024, acc_rows=1024, bw=16, lat=10, dataflow="weight_stationary",
            queue_depth=8, dma_in_flight=16):
    return MachineParams(dim=dim, sp_rows=sp_rows, acc_rows=acc_rows, pwl_entries=16,
                         operand_dtype="float32", dram_bytes=1 << 26, dram_bw=bw,
                         dram_latency=lat, dataflow=dataflow, queue_depth=queue_depth,
                         dma_in_flight=dma_in_flight)


def run(builder, args):
    simulator.take_stats()
    out = simulator.run_program(builder.encode(), [np.asarray(a) for a in args])
    (stats,) = simulator.take_stats()
    return out, stats


def xfer(elems, bw):
    """Cycles a DMA of `elems` fp32 elements occupies its engine (docs/ISA.md, "Costs")."""
    return math.ceil(elems * 4 / bw)


def dma(elems, bw, lat):
    """Cycles from a lone DMA's start until its data has arrived."""
    return lat + xfer(elems, bw)


def gemms(dataflow, dim, m, k, count):
    """A LOAD of A and B, then `count` GEMMs back to back on the loaded tiles."""
    b = ProgramBuilder(machine(dim=dim, dataflow=dataflow))
    a, w = np.ones((m, dim), F32), np.ones((dim, dim), F32)
    ra, rw = b.region(a.nbytes), b.region(w.nbytes)
    b.emit(Op.LOAD, dst_mem=Mem.SCRATCHPAD, dst_row=0, dram_addr=ra, rows=m, cols=dim,
           row_stride=dim * 4, col_stride=4)
    b.emit(Op.LOAD, signal=COMPUTE, dst_mem=Mem.SCRATCHPAD, dst_row=m, dram_addr=rw, rows=dim,
           cols=dim, row_stride=dim * 4, col_stride=4)
    for i in range(count):
        b.emit(Op.GEMM, wait=LOAD if i == 0 else 0, a_row=0, b_row=m, c_row=i * m, m=m, k=k,
               n=dim, accumulate=0)
    return run(b, [a, w])[1]


# ------------------------------------------------------------------- single tiles and chains
@pytest.mark.parametrize("m,k", [(8, 4), (3, 4), (20, 2)])
def test_weight_stationary_tile_and_chain(m, k):
    dim = 4
    one = gemms("weight_stationary", dim, m, k, 1)
    assert one["compute_busy"] == k + m + 2 * dim - 2  # preload, stream, fill and drain
    three = gemms("weight_stationary", dim, m, k, 3)
    # chained: the preload hides behind the previous GEMM's m rows; fill / drain overlap
    assert three["compute_busy"] == k + m + 2 * dim - 2 + 2 * (m + max(0, k - m))
    # the two loads stream back to back; the GEMMs start when the second one's data is in
    assert three["load_busy"] == xfer(m * dim, 16) + xfer(dim * dim, 16)
    assert three["cycles"] == three["load_busy"] + 10 + three["compute_busy"]


@pytest.mark.parametrize("m,k", [(8, 4), (3, 4), (9, 2)])
def test_output_stationary_tile_and_chain(m, k):
    dim = 4
    passes = math.ceil(m / dim)
    one = gemms("output_stationary", dim, m, k, 1)
    assert one["compute_busy"] == passes * max(k, dim) + 2 * dim - 2
    three = gemms("output_stationary", dim, m, k, 3)
    assert three["compute_busy"] == 3 * passes * max(k, dim) + 2 * dim - 2


def test_stall_attribution():
    """A GEMM waiting for its tiles stalls on DMA; the store waiting for it on a dependency."""
    dim, m, bw, lat = 4, 8, 16, 10
    b = ProgramBuilder(machine(dim=dim, bw=bw, lat=lat))
    a = np.ones((m, dim), F32)
    ra, ro = b.region(a.nbytes), b.region(a.nbytes)
    b.emit(Op.LOAD, signal=COMPUTE, dst_mem=Mem.SCRATCHPAD, dst_row=0, dram_addr=ra, rows=m,
           cols=dim, row_stride=dim * 4, col_stride=4)
    b.emit(Op.GEMM, wait=LOAD, signal=STORE, a_row=0, b_row=0, c_row=0, m=m, k=dim, n=dim,
           accumulate=0)
    b.emit(Op.STORE, wait=COMPUTE, src_mem=Mem.ACCUMULATOR, src_row=0, dram_addr=ro, rows=m,
           cols=dim, row_stride=dim * 4, col_stride=4)
    _, s = run(b, [a, np.zeros_like(a)])
    load = dma(m * dim, bw, lat)
    gemm = dim + m + 2 * dim - 2
    assert s["compute_stall_dma"] == load
    assert s["store_stall_dep"] == load + gemm
    assert s["cycles"] == load + gemm + dma(m * dim, bw, lat)
    others = [f"{q}_stall_{c}" for q in ("load", "compute", "store")
              for c in ("dma", "dep", "full", "queue")]
    assert sum(s[f] for f in others) == s["compute_stall_dma"] + s["store_stall_dep"]


# ------------------------------------------------------------- DMA pipelining and queues
def _independent_loads(n, in_flight, dim=4, rows=16, bw=16, lat=100):
    b = ProgramBuilder(machine(dim=dim, bw=bw, lat=lat, dma_in_flight=in_flight))
    a = np.ones((n * rows, dim), F32)
    ra = b.region(a.nbytes)
    for i in range(n):
        b.emit(Op.LOAD, dst_mem=Mem.SCRATCHPAD, dst_row=i * rows, dram_addr=ra + i * rows * dim * 4,
               rows=rows, cols=dim, row_stride=dim * 4, col_stride=4)
    return run(b, [a])[1], xfer(rows * dim, bw), lat


def test_back_to_back_dmas_overlap_their_latency():
    """Independent loads stream at the DRAM bandwidth; only the last one's latency shows."""
    s, x, lat = _independent_loads(5, in_flight=16)
    assert s["load_busy"] == 5 * x
    assert s["cycles"] == 5 * x + lat  # not 5 * (lat + x)
    assert s["load_stall_dma"] == 0


def test_dmas_in_flight_are_limited():
    """Two DMAs in flight: the third waits for the first to land (a DMA stall), and so on in
    pairs: loads start at 0, x, x+lat, 2x+lat, 2x+2lat."""
    s, x, lat = _independent_loads(5, in_flight=2)
    assert s["cycles"] == (2 * x + 2 * lat) + x + lat
    assert s["load_stall_dma"] == 2 * (lat - x)
    assert s["load_busy"] == 5 * x


def _queue_program(depth: int):
    """A long load feeding three GEMMs, then an independent load that could start at once."""
    dim, m, bw, lat = 4, 64, 16, 100
    b = ProgramBuilder(machine(dim=dim, bw=bw, lat=lat, queue_depth=depth))
    a = np.ones((m, dim), F32)
    ra = b.region(a.nbytes)
    b.emit(Op.LOAD, signal=COMPUTE, dst_mem=Mem.SCRATCHPAD, dst_row=0, dram_addr=ra, rows=m,
           cols=dim, row_stride=dim * 4, col_stride=4)
    for i in range(3):
        b.emit(Op.GEMM, wait=LOAD if i == 0 else 0, a_row=0, b_row=0, c_row=i * m, m=m, k=dim,
               n=dim, accumulate=0)
    b.emit(Op.LOAD, dst_mem=Mem.SCRATCHPAD, dst_row=m, dram_addr=ra, rows=m, cols=dim,
           row_stride=dim * 4, col_stride=4)
    return run(b, [a])[1], xfer(m * dim, bw), lat


def test_full_queue_holds_up_the_dispatcher():
    # Depth 2: the third GEMM waits in the dispatcher until the first starts (when the first
    # load's data is in), and the last load, behind it in program order, waits with it.
    shallow, busy, lat = _queue_program(2)
    assert shallow["load_stall_queue"] == lat
    assert shallow["compute_stall_queue"] == 0 and shallow["store_stall_queue"] == 0
    deep, _, _ = _queue_program(8)  # room for all three GEMMs: the load starts at once
    assert deep["load_stall_queue"] == 0
    assert deep["load_busy"] == shallow["load_busy"] == 2 * busy
    assert deep["cycles"] == shallow["cycles"]  # the GEMMs are the critical path either way


# ---------------------------------------------------------------------------- LOOP_GEMM
def loop_gemm(M, K, N, tiles, dim, bw, lat, sp_rows=4096, acc_rows=4096):
    b = ProgramBuilder(machine(dim=dim, sp_rows=sp_rows, acc_rows=acc_rows, bw=bw, lat=lat))
    rng = np.random.default_rng(0)
    a = rng.standard_normal((M, K)).astype(F32)
    w = rng.standard_normal((K, N)).astype(F32)
    ra, rw, rc = b.region(a.nbytes), b.region(w.nbytes), b.region(M * N * 4)
    tm, tk, tn = tiles
    b.emit(Op.LOOP_GEMM, a_addr=ra, a_row_stride=K * 4, a_col_stride=4, b_addr=rw,
           b_row_stride=N * 4, b_col_stride=4, c_addr=rc, c_row_stride=N * 4, c_col_stride=4,
           M=M, K=K, N=N, tile_m=tm, tile_k=tk, tile_n=tn, sp_base=0, acc_base=0)
    out, stats = run(b, [a, w, np.zeros((M, N), F32)])
    # K blocks accumulate in ascending order, so the sum is ascending over all of K: bit exact
    np.testing.assert_array_equal(out[-1], gemm_reference(a, w))
    return stats


def test_loop_gemm_compute_bound_closed_form():
    M, K, N, dim, tiles, bw, lat = 512, 256, 256, 16, (128, 4, 4), 256, 20
    tm, tk, tn = tiles
    s = loop_gemm(M, K, N, tiles, dim, bw, lat)
    steps = (N // (tn * dim)) * (M // tm) * (K // (tk * dim))
    n_gemms = (M // tm) * (K // dim) * (N // dim)
    step_load = tk * xfer(tm * dim, bw) + tn * xfer(tk * dim * dim, bw)  # 192 cycles
    # Pipeline (loop_gemm.cc, docs/ISA.md "Costs"): the first step's loads stream back to back
    # and land one latency after the last; then every GEMM runs back to back. Step s's loads
    # wait only for the buffer of step s - 2, freed one step of GEMMs (16 x 128 = 2048 cycles)
    # before step s's GEMMs start, so they land (step_load + lat = 212 cycles later) in time;
    # the accumulator buffer is freed by stores a whole tile earlier; no bias / act
    # op sits between the GEMMs. So each GEMM starts the cycle the previous one ends, and all
    # but the first chain (weight preload hidden: m + max(0, k - m_prev) = tm). Then the last
    # tile's tn stores stream and the last lands one latency later.
    first_load = step_load + lat
    compute = (dim + tm + 2 * dim - 2) + (n_gemms - 1) * tm
    stores = tn * xfer(tm * dim, bw) + lat
    expect = first_load + compute + stores
    assert s["load_busy"] == steps * step_load
    assert s["compute_busy"] == compute
    assert s["compute_stall_dma"] == first_load  # the array waits only for the first tiles
    assert s["cycles"] == expect
    util = s["macs"] / (s["cycles"] * dim * dim)
    assert util > 0.9


def test_loop_gemm_dram_bound_closed_form():
    M, K, N, dim, tiles, bw, lat = 256, 256, 256, 16, (64, 4, 2), 8, 50
    tm, tk, tn = tiles
    s = loop_gemm(M, K, N, tiles, dim, bw, lat)
    steps = (N // (tn * dim)) * (M // tm) * (K // (tk * dim))
    step_load = tk * xfer(tm * dim, bw) + tn * xfer(tk * dim * dim, bw)  # 3072 cycles
    loads = steps * step_load
    # Per step: one GEMM that waited for its tiles (unchained), the other tk * tn - 1 chained.
    step_compute = (dim + tm + 2 * dim - 2) + (tk * tn - 1) * tm  # 558 cycles
    stores = tn * xfer(tm * dim, bw) + lat
    # The loads stream back to back from cycle 0 (latency overlapped; 50 < 512-cycle DMAs, so
    # at most two in flight; the buffer step s reuses was freed when step s - 2's GEMMs ended,
    # step_load - lat - step_compute = 2464 cycles before step s's loads start). Step s's
    # GEMMs start when its last load lands, (s + 1) * step_load + lat, the
    # compute engine having been free since step s - 1 ended; after the last step the last
    # tile's stores stream and the last lands one latency later.
    expect = loads + lat + step_compute + stores
    assert s["load_busy"] == loads
    assert s["compute_busy"] == steps * step_compute
    # The array waits on DMA: first for the first step's tiles, then between steps.
    assert s["compute_stall_dma"] == (step_load + lat) + (steps - 1) * (step_load - step_compute)
    assert s["compute_stall_dma"] > 0.5 * s["cycles"]
    assert s["cycles"] == expect


def _tiles_program(double: bool, tiles=8, m=32, dim=4, bw=32, lat=4):
    """A tiles of m rows through one weight tile; A loads double or single buffered."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((tiles, m, dim)).astype(F32)
    w = rng.standard_normal((dim, dim)).astype(F32)
    b = ProgramBuilder(machine(dim=dim, bw=bw, lat=lat))
    ra, rw, ro = b.region(a.nbytes), b.region(w.nbytes), b.region(a.nbytes)
    b.emit(Op.LOAD, dst_mem=Mem.SCRATCHPAD, dst_row=0, dram_addr=rw, rows=dim, cols=dim,
           row_stride=dim * 4, col_stride=4)
    nbuf = 2 if double else 1
    for i in range(tiles):
        buf = dim + (i % nbuf) * m
        b.emit(Op.LOAD, wait=COMPUTE if i >= nbuf else 0, signal=COMPUTE, dst_mem=Mem.SCRATCHPAD,
               dst_row=buf, dram_addr=ra + i * m * dim * 4, rows=m, cols=dim,
               row_stride=dim * 4, col_stride=4)
        b.emit(Op.GEMM, wait=LOAD, signal=(LOAD if i + nbuf < tiles else 0) |
               (STORE if i == tiles - 1 else 0), a_row=buf, b_row=0, c_row=i * m, m=m, k=dim,
               n=dim, accumulate=0)
    b.emit(Op.STORE, wait=COMPUTE, src_mem=Mem.ACCUMULATOR, src_row=0, dram_addr=ro,
           rows=tiles * m, cols=dim, row_stride=dim * 4, col_stride=4)
    out, stats = run(b, [a, w, np.zeros_like(a)])
    np.testing.assert_array_equal(out[-1], gemm_reference(a.reshape(-1, dim), w).reshape(a.shape))
    return stats, dict(load_a=dma(m * dim, bw, lat), gemm=dim + m + 2 * dim - 2,
                       load_w=xfer(dim * dim, bw), store=dma(tiles * m * dim, bw, lat))


def test_double_buffering_hides_dma_when_balanced():
    tiles = 8
    single, c = _tiles_program(False, tiles)
    double, _ = _tiles_program(True, tiles)
    chained = 32  # m + max(0, k - m_prev): back-to-back GEMMs
    assert c["load_a"] == 20 and c["gemm"] == 42  # DMA and compute about balanced
    # single buffer: every load waits for the previous GEMM (buffer full) and every GEMM for
    # its load (DMA): nothing overlaps and no GEMM chains. (The first A load streams right
    # behind the weights, so of the weight load only its transfer counts.)
    assert single["cycles"] == c["load_w"] + tiles * (c["load_a"] + c["gemm"]) + c["store"]
    assert single["load_stall_full"] > 0 and single["compute_stall_dma"] > 0
    # double buffer: after the first load the GEMMs run back to back (and chain)
    assert double["cycles"] == (c["load_w"] + c["load_a"] + c["gemm"] + (tiles - 1) * chained
                                + c["store"])
    assert double["cycles"] < 0.7 * single["cycles"]


@pytest.mark.parametrize("target", ["nm/fp32-16x16", "nm/bf16-32x32"])
def test_gemm_1024_utilization_at_least_90_percent(target):
    import nm_tvm
    from nm_tvm.models import gemm_model

    compiled = nm_tvm.compile(gemm_model(1024, 1024, 1024), target=target)
    x = np.random.default_rng(0).standard_normal((1024, 1024)).astype(F32)
    compiled.run({"input": x})
    assert compiled.stats.summary()["pe_utilization"] >= 0.9
