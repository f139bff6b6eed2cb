"""nm_tvm.target.cost_model pinned to the simulator: each instruction cost and the LOOP_GEMM
buffer fit equal what the C++ timing pass does; the LOOP_GEMM estimate's engine totals match
the simulator's where they are exact and bracket it where the estimate is static; the tile
choice is checked against the simulator's own timing of the candidates; and the timing pass
alone (``simulator.estimate``) equals a run's statistics without touching memory."""
from __future__ import annotations

import numpy as np
import pytest

from nm_tvm.target import cost_model as cm
from nm_tvm.target import simulator
from nm_tvm.target.codegen.gemm import (choose_gemm_tiles, gemm_tile_candidates,
                                        simulated_loop_gemm_cycles)
from nm_tvm.target.hardware import load_preset
from nm_tvm.target.isa import MachineParams, Mem, Op, ProgramBuilder, Queue, bit

F32 = np.float32
LOAD, COMPUTE, STORE = bit(Queue.LOAD), bit(Queue.COMPUTE), bit(Queue.STORE)
DATAFLOWS = ("weight_stationary", "output_stationary")


def machine(dim=4, sp_rows=1024, acc_rows=1024, bw=16, lat=10, dataflow="weight_stationary"):
    return MachineParams(dim=dim, sp_rows=sp_rows, acc_rows=acc_rows, pwl_entries=16,
                         operand_dtype="float32", dram_bytes=1 << 26, dram_bw=bw,
                         dram_latency=lat, dataflow=dataflow, queue_depth=8, dma_in_flight=16)


# ------------------------------------------------------------------------- instruction costs
@pytest.mark.parametrize("rows,cols,bw,lat", [(3, 4, 16, 10), (7, 4, 5, 33), (1, 1, 64, 0)])
def test_lone_load_and_store(rows, cols, bw, lat):
    hw = machine(bw=bw, lat=lat)
    b = ProgramBuilder(hw)
    src, dst = b.region(rows * cols * 4), b.region(rows * cols * 4)
    b.emit(Op.LOAD, signal=STORE, dst_mem=Mem.SCRATCHPAD, dst_row=0, dram_addr=src, rows=rows,
           cols=cols, row_stride=cols * 4, col_stride=4)
    b.emit(Op.STORE, wait=LOAD, src_mem=Mem.SCRATCHPAD, src_row=0, dram_addr=dst, rows=rows,
           cols=cols, row_stride=cols * 4, col_stride=4)
    s = simulator.estimate(b.encode())
    nbytes = rows * cols * 4
    assert s["load_busy"] == s["store_busy"] == cm.transfer_cycles(hw, nbytes)
    # the store starts when the load's data has landed, and ends when its own has
    assert s["cycles"] == 2 * cm.dma_cycles(hw, nbytes)


def _gemm_chain(hw, m, k, count):
    b = ProgramBuilder(hw)
    d = hw.dim
    ra, rw = b.region(m * d * 4), b.region(d * d * 4)
    b.emit(Op.LOAD, dst_mem=Mem.SCRATCHPAD, dst_row=0, dram_addr=ra, rows=m, cols=d,
           row_stride=d * 4, col_stride=4)
    b.emit(Op.LOAD, signal=COMPUTE, dst_mem=Mem.SCRATCHPAD, dst_row=m, dram_addr=rw, rows=d,
           cols=d, row_stride=d * 4, col_stride=4)
    for i in range(count):
        b.emit(Op.GEMM, wait=LOAD if i == 0 else 0, a_row=0, b_row=m, c_row=i * m, m=m, k=k,
               n=d, accumulate=0)
    return simulator.estimate(b.encode())


@pytest.mark.parametrize("dataflow", DATAFLOWS)
@pytest.mark.parametrize("m,k", [(8, 4), (3, 4), (20, 2), (5, 1)])
def test_gemm_unchained_and_chained(dataflow, m, k):
    hw = machine(dataflow=dataflow)
    one, three = _gemm_chain(hw, m, k, 1), _gemm_chain(hw, m, k, 3)
    assert one["compute_busy"] == cm.gemm_cycles(hw, m, k)
    chained = cm.gemm_cycles(hw, m, k, chained=True, m_prev=m)
    assert three["compute_busy"] == cm.gemm_cycles(hw, m, k) + 2 * chained


@pytest.mark.parametrize("rows", [1, 3, 17])
def test_vec(rows):
    hw = machine()
    b = ProgramBuilder(hw)
    r = b.region(rows * 4 * 4)
    b.emit(Op.LOAD, signal=COMPUTE, dst_mem=Mem.ACCUMULATOR, dst_row=0, dram_addr=r, rows=rows,
           cols=4, row_stride=16, col_stride=4)
    b.emit(Op.VEC, wait=LOAD, op=0, dst_row=0, a_row=0, b_row=0, rows=rows, b_broadcast=0)
    assert simulator.estimate(b.encode())["compute_busy"] == cm.vec_cycles(rows)


@pytest.mark.parametrize("segments", [1, 2, 3, 4, 5, 9, 16])
def test_pwl(segments):
    hw = machine()
    b = ProgramBuilder(hw)
    rt, rx = b.region(segments * 12), b.region(2 * 16)
    b.emit(Op.LOAD_PWL, table_base=0, dram_addr=rt, n_segments=segments)
    b.emit(Op.LOAD, signal=COMPUTE, dst_mem=Mem.ACCUMULATOR, dst_row=0, dram_addr=rx, rows=2,
           cols=4, row_stride=16, col_stride=4)
    b.emit(Op.PWL, wait=LOAD, dst_row=2, src_row=0, rows=2, table_base=0, n_segments=segments)
    assert simulator.estimate(b.encode())["compute_busy"] == cm.pwl_cycles(2, segments)


# ------------------------------------------------------------------------------- LOOP_GEMM
def _loop_gemm(hw, M, K, N, tiles: cm.GemmTiles):
    b = ProgramBuilder(hw)
    ra, rw, rc = b.region(M * K * 4), b.region(K * N * 4), b.region(M * N * 4)
    b.emit(Op.LOOP_GEMM, a_addr=ra, a_row_stride=K * 4, a_col_stride=4, b_addr=rw,
           b_row_stride=N * 4, b_col_stride=4, c_addr=rc, c_row_stride=N * 4, c_col_stride=4,
           M=M, K=K, N=N, tile_m=tiles.tile_m, tile_k=tiles.tile_k, tile_n=tiles.tile_n,
           sp_base=0, acc_base=0)
    return b.encode()


@pytest.mark.parametrize("tiles", [cm.GemmTiles(8, 2, 1), cm.GemmTiles(5, 1, 3),
                                   cm.GemmTiles(16, 4, 2)])
def test_buffer_fit_is_the_simulators(tiles):
    """Exactly enough rows: accepted; one row fewer of either memory: rejected."""
    sp, acc = cm.loop_gemm_buffer_rows(machine(), tiles)
    M, K, N = 2 * tiles.tile_m, 2 * tiles.tile_k * 4, 2 * tiles.tile_n * 4
    exact = machine(sp_rows=sp, acc_rows=acc)
    assert cm.loop_gemm_fits(exact, tiles)
    simulator.estimate(_loop_gemm(exact, M, K, N, tiles))
    for short in (machine(sp_rows=sp - 1, acc_rows=acc), machine(sp_rows=sp, acc_rows=acc - 1)):
        assert not cm.loop_gemm_fits(short, tiles)
        with pytest.raises(ValueError, match="buffers do not fit"):
            simulator.estimate(_loop_gemm(short, M, K, N, tiles))


@pytest.mark.parametrize("dataflow", DATAFLOWS)
@pytest.mark.parametrize("M,K,N,tiles,bw,lat", [
    (512, 256, 256, cm.GemmTiles(128, 4, 4), 256, 20),   # compute bound
    (256, 256, 256, cm.GemmTiles(64, 4, 2), 8, 50),      # DRAM bound
    (100, 48, 80, cm.GemmTiles(32, 2, 2), 32, 10),       # remainders in M, K and N tiles
])
def test_loop_gemm_estimate_against_the_simulator(dataflow, M, K, N, tiles, bw, lat):
    """Transfers exact per engine (the estimate adds each DMA's latency); compute between
    one chain start for the whole LOOP_GEMM and one per output tile, as the estimate takes."""
    hw = machine(dim=16, sp_rows=4096, acc_rows=4096, bw=bw, lat=lat, dataflow=dataflow)
    s = simulator.estimate(_loop_gemm(hw, M, K, N, tiles))
    est = cm.loop_gemm_estimate(hw, M, K, N, tiles)
    d, tm, tk, tn = 16, tiles.tile_m, tiles.tile_k, tiles.tile_n
    m_tiles, n_tiles, k_steps = -(-M // tm), -(-N // (tn * d)), -(-K // (tk * d))
    loads = m_tiles * n_tiles * k_steps * (tk + tn)
    stores = m_tiles * n_tiles * tn
    assert est.steps == m_tiles * n_tiles * k_steps
    if K % (tk * d) == 0 and N % (tn * d) == 0:  # every step moves full tiles
        assert s["load_busy"] == est.load - loads * lat
        assert s["store_busy"] == est.store - stores * lat
        start = cm.fill_drain(hw) + (0 if dataflow == "output_stationary" else d)
        assert est.compute - (m_tiles * n_tiles - 1) * start <= s["compute_busy"]
        assert s["compute_busy"] <= est.compute + (est.steps - m_tiles * n_tiles) * start
        assert s["cycles"] >= est.cycles - (loads + stores) * lat
    else:  # partial blocks move and compute less than the estimate's full DIM blocks
        assert s["load_busy"] <= est.load - loads * lat
        assert s["store_busy"] <= est.store - stores * lat
        assert s["compute_busy"] <= est.compute
        assert s["cycles"] <= est.load + est.compute + est.store  # never worse than serial


# Measured on these shapes (benchmarks/tile_choice.py has whole models): fp32-16x16 within 1%
# of the fastest candidate; bf16-32x32 up to 9.5% off at (49, 4608, 512) (the static estimate
# takes the three engines as perfectly overlapped; with 32-wide blocks and few M rows the
# pipeline's start-up between steps, which it does not model, moves the ranking). A regression
# in the estimate shows as a step past these bounds.
STATIC_CHOICE_SLACK = {"fp32-16x16": 1.02, "bf16-32x32": 1.10}


@pytest.mark.parametrize("preset", sorted(STATIC_CHOICE_SLACK))
@pytest.mark.parametrize("m,k,n", [(128, 768, 768), (197, 384, 1536), (50, 768, 3072),
                                   (3136, 576, 64), (784, 1152, 128), (49, 4608, 512)])
def test_static_tile_choice_is_near_the_simulated_best(preset, m, k, n):
    """On transformer and CNN shapes the statically chosen tiling is near the fastest candidate
    as the simulator times it (bounds above; small GEMMs, decided by latency the static
    estimate does not model, can be 1.4x off: benchmarks/tile_choice.py)."""
    hw = load_preset(preset).machine()
    timed = {t: simulated_loop_gemm_cycles(hw, m, k, n, t) for t in gemm_tile_candidates(hw, m, k, n)}
    chosen = choose_gemm_tiles(load_preset(preset), m, k, n)
    assert chosen in timed
    assert timed[chosen] <= STATIC_CHOICE_SLACK[preset] * min(timed.values())


# --------------------------------------------------------------------------- timing pass only
def test_estimate_equals_the_runs_statistics_and_touches_nothing():
    hw = machine(dim=4)
    M, K, N = 9, 12, 8
    program = _loop_gemm(hw, M, K, N, cm.GemmTiles(4, 2, 1))
    rng = np.random.default_rng(0)
    args = [rng.standard_normal((M, K)).astype(F32), rng.standard_normal((K, N)).astype(F32),
            np.zeros((M, N), F32)]
    simulator.take_stats()
    simulator.run_program(program, args)
    (ran,) = simulator.take_stats()
    assert simulator.estimate(program) == ran
    assert simulator.take_stats() == []  # the estimate is not a run: nothing is logged


def test_estimate_rejects_bad_programs_by_name():
    program = _loop_gemm(machine(), 8, 8, 8, cm.GemmTiles(4, 1, 1))
    with pytest.raises(ValueError):
        simulator.estimate(program[:5])  # truncated
    bad = program.copy()
    bad[0] = 12345  # magic
    with pytest.raises(ValueError, match="magic"):
        simulator.estimate(bad)
    import tvm
    import tvm_ffi

    with pytest.raises(ValueError, match="expects only the program tensor"):
        tvm_ffi.get_global_func("nm_accel.estimate")(tvm.runtime.tensor(program, tvm.cpu()),
                                                    tvm.runtime.tensor(program, tvm.cpu()))
