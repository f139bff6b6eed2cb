"""The accelerator's cost model as the compiler sees it: instruction costs (docs/ISA.md,
"Costs"), the LOOP_GEMM buffer fit, and the static LOOP_GEMM estimate codegen minimises when it
picks tiles.

One statement of each cost, pinned to the simulator by tests/test_cost_model.py: every
instruction cost and the buffer fit equal what the C++ scheduler (csrc/scheduler.cc) and
LOOP_GEMM planner (csrc/loop_gemm.cc) do, and the tile choice is checked against the
simulator's own timing pass (``simulator.estimate``) on the candidates. The estimate is static
(no event model): it ignores when double buffering fails to hide a DMA, which the simulator
models and reports.
"""
from __future__ import annotations

from dataclasses import dataclass

from .hardware import HardwareConfig  # or an isa.MachineParams: the same fields
from .isa import ELEM_BYTES


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def transfer_cycles(hw: HardwareConfig, nbytes: int) -> int:
    """Cycles a DMA of ``nbytes`` occupies its engine (the bytes stream at the DRAM bandwidth)."""
    return _ceil(nbytes, hw.dram_bw)


def dma_cycles(hw: HardwareConfig, nbytes: int) -> int:
    """Cycles from a lone DMA's start until its data has landed: transfer plus DRAM latency."""
    return hw.dram_latency + transfer_cycles(hw, nbytes)


def fill_drain(hw: HardwareConfig) -> int:
    """Cycles to fill and drain the DIM x DIM array once."""
    return 2 * hw.dim - 2


def gemm_cycles(hw: HardwareConfig, m: int, k: int, chained: bool = False,
                m_prev: int = 0) -> int:
    """One GEMM of ``m`` rows over ``k`` inner elements (one DIM block of outputs).

    Output-stationary: ceil(m / DIM) passes of max(k, DIM). Weight-stationary: preload k
    weight rows, stream m rows; chained onto a GEMM of ``m_prev`` rows, the preload ran in the
    shadow buffer while that one streamed, so only what did not fit its shadow remains. An
    unchained GEMM also fills and drains the array."""
    if hw.dataflow == "output_stationary":
        return _ceil(m, hw.dim) * max(k, hw.dim) + (0 if chained else fill_drain(hw))
    if chained:
        return m + max(0, k - m_prev)
    return k + m + fill_drain(hw)


def vec_cycles(rows: int) -> int:
    """A VEC op over ``rows`` accumulator rows: one row per cycle."""
    return rows


def pwl_cycles(rows: int, n_segments: int) -> int:
    """A PWL map over ``rows`` rows: one row per cycle after a ceil(log2 n) breakpoint search."""
    return rows + ((n_segments - 1).bit_length() if n_segments > 1 else 0)


# ------------------------------------------------------------------------------- LOOP_GEMM
@dataclass(frozen=True)
class GemmTiles:
    """LOOP_GEMM tile sizes: tile_m rows, tile_k and tile_n DIM blocks of K and N."""

    tile_m: int
    tile_k: int
    tile_n: int


def loop_gemm_buffer_rows(hw: HardwareConfig, tiles: GemmTiles) -> tuple[int, int]:
    """(scratchpad rows, accumulator rows) a LOOP_GEMM's double buffers take: two A tiles of
    tile_k x tile_m rows and two B tiles of tile_k x DIM x tile_n rows; two C tiles of
    tile_m x tile_n rows plus tile_n bias rows (docs/ISA.md, "LOOP_GEMM")."""
    tm, tk, tn = tiles.tile_m, tiles.tile_k, tiles.tile_n
    return 2 * (tk * tm + tk * hw.dim * tn), 2 * tm * tn + tn


def loop_gemm_fits(hw: HardwareConfig, tiles: GemmTiles) -> bool:
    sp, acc = loop_gemm_buffer_rows(hw, tiles)
    return sp <= hw.sp_rows and acc <= hw.acc_rows


@dataclass(frozen=True)
class LoopGemmEstimate:
    """Per-engine cycle totals of one LOOP_GEMM (DMA latency included per transfer)."""

    load: int
    compute: int
    store: int
    steps: int

    @property
    def cycles(self) -> int:
        """Double buffering overlaps the engines: the slowest engine's total."""
        return max(self.load, self.compute, self.store)


def loop_gemm_estimate(hw: HardwareConfig, m: int, k: int, n: int, tiles: GemmTiles,
                       has_d: bool = False) -> LoopGemmEstimate:
    """The LOOP_GEMM expansion, counted per engine: per step ``tile_k`` A loads and ``tile_n``
    B loads, ``tile_k * tile_n`` chained GEMMs of a full DIM block of K; per output tile
    ``tile_n`` stores (and D loads with ``has_d``) and one chain start (fill / drain, and the
    weight preload in weight-stationary)."""
    d, tm, tk, tn = hw.dim, tiles.tile_m, tiles.tile_k, tiles.tile_n
    kb, nb = _ceil(k, d), _ceil(n, d)
    full, rem = divmod(m, tm)
    n_tiles, k_steps = _ceil(nb, tn), _ceil(kb, tk)
    tiles_total = n_tiles * (full + (rem > 0))
    load = compute = store = 0
    for count, rows in [(full, tm)] + ([(1, rem)] if rem else []):
        per = count * n_tiles
        row_block = dma_cycles(hw, rows * d * ELEM_BYTES)
        load += per * k_steps * (tk * row_block + tn * dma_cycles(hw, tk * d * d * ELEM_BYTES))
        load += per * tn * row_block if has_d else 0
        compute += per * k_steps * tk * tn * gemm_cycles(hw, rows, d, chained=True, m_prev=rows)
        store += per * tn * row_block
    chain_start = fill_drain(hw) + (0 if hw.dataflow == "output_stationary" else d)
    compute += tiles_total * chain_start
    return LoopGemmEstimate(load, compute, store, tiles_total * k_steps)
