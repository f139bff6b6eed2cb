// LOOP_GEMM: a whole tiled GEMM expanded into double-buffered LOAD/GEMM/VEC/PWL/STORE micro-ops.
#ifndef NM_ACCEL_LOOP_GEMM_H_
#define NM_ACCEL_LOOP_GEMM_H_

#include <cstdint>
#include <functional>

#include "program.h"

namespace nm_accel {

// Validated LOOP_GEMM operands plus the on-chip buffer layout.
struct LoopGemmPlan {
  int64_t dim = 0;
  DramAccess a, b, c, d;  // matrices: addr and strides (rows/cols = their full shape)
  int64_t bias_addr = 0;
  int64_t M = 0, K = 0, N = 0;
  // Tile sizes: rows per M tile, DIM blocks per K group and per N group.
  int64_t tile_m = 0, tile_k = 0, tile_n = 0;
  int64_t act_table = 0, act_segments = 0;
  bool has_d = false, has_bias = false, has_act = false;

  // Scratchpad buffer i (i = 0, 1) starts at sp_buf[i]: tile_k A blocks of tile_m rows, then
  // tile_n B blocks of tile_k * DIM rows (K rows of DIM columns each).
  int64_t sp_buf[2] = {0, 0};
  // Accumulator buffer i holds the output tile: tile_n blocks of tile_m rows.
  int64_t acc_buf[2] = {0, 0};
  // The current N group's bias, one row per DIM block: bias_row .. bias_row + tile_n - 1.
  int64_t bias_row = 0;
};

// Checks the LOOP_GEMM instruction (masks, operands, whole matrices inside DRAM regions,
// buffers fitting in scratchpad/accumulator) and lays out its buffers. Throws SimError.
LoopGemmPlan PlanLoopGemm(const OpId& id, const Instr& in, const Program& prog);

// Emits the micro-ops in program order (docs/ISA.md, LOOP_GEMM). Tokens follow VTA: load ->
// compute "tiles ready", compute -> load "scratchpad buffer free", compute -> store "output
// ready", store -> compute (store -> load when D is preloaded) "accumulator buffer free".
void ExpandLoopGemm(const LoopGemmPlan& plan, const std::function<void(const Instr&)>& emit);

}  // namespace nm_accel

#endif  // NM_ACCEL_LOOP_GEMM_H_
