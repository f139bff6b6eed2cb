// LOOP_GEMM planning (validation, buffer layout) and micro-op expansion.
#include "loop_gemm.h"

#include <algorithm>
#include <vector>

namespace nm_accel {
namespace {

using i128 = __int128;

constexpr int64_t kLoadBit = 1 << isa::kQueueLoad;
constexpr int64_t kComputeBit = 1 << isa::kQueueCompute;
constexpr int64_t kStoreBit = 1 << isa::kQueueStore;

int64_t CeilDiv(int64_t a, int64_t b) { return a / b + (a % b != 0); }

Instr MakeLoad(int64_t mem, int64_t row, const DramAccess& src) {
  namespace f = isa::load;
  Instr in;
  in.w[isa::kWordOpcode] = isa::kOpLoad;
  in.w[f::kDstMem] = mem;
  in.w[f::kDstRow] = row;
  in.w[f::kDramAddr] = src.addr;
  in.w[f::kRows] = src.rows;
  in.w[f::kCols] = src.cols;
  in.w[f::kRowStride] = src.row_stride;
  in.w[f::kColStride] = src.col_stride;
  return in;
}

Instr MakeStore(int64_t row, const DramAccess& dst) {
  namespace f = isa::store;
  Instr in;
  in.w[isa::kWordOpcode] = isa::kOpStore;
  in.w[f::kSrcMem] = isa::kMemAccumulator;
  in.w[f::kSrcRow] = row;
  in.w[f::kDramAddr] = dst.addr;
  in.w[f::kRows] = dst.rows;
  in.w[f::kCols] = dst.cols;
  in.w[f::kRowStride] = dst.row_stride;
  in.w[f::kColStride] = dst.col_stride;
  return in;
}

Instr MakeGemm(int64_t a_row, int64_t b_row, int64_t c_row, int64_t m, int64_t k, int64_t n,
               bool accumulate) {
  namespace f = isa::gemm;
  Instr in;
  in.w[isa::kWordOpcode] = isa::kOpGemm;
  in.w[f::kARow] = a_row;
  in.w[f::kBRow] = b_row;
  in.w[f::kCRow] = c_row;
  in.w[f::kM] = m;
  in.w[f::kK] = k;
  in.w[f::kN] = n;
  in.w[f::kAccumulate] = accumulate ? 1 : 0;
  return in;
}

// rows += the broadcast row `bias_row`, in place.
Instr MakeBiasAdd(int64_t row, int64_t bias_row, int64_t rows) {
  namespace f = isa::vec;
  Instr in;
  in.w[isa::kWordOpcode] = isa::kOpVec;
  in.w[f::kOp] = isa::kVecOpAdd;
  in.w[f::kDstRow] = row;
  in.w[f::kARow] = row;
  in.w[f::kBRow] = bias_row;
  in.w[f::kRows] = rows;
  in.w[f::kBBroadcast] = 1;
  return in;
}

Instr MakePwl(int64_t row, int64_t rows, int64_t table, int64_t segments) {
  namespace f = isa::pwl;
  Instr in;
  in.w[isa::kWordOpcode] = isa::kOpPwl;
  in.w[f::kDstRow] = row;
  in.w[f::kSrcRow] = row;
  in.w[f::kRows] = rows;
  in.w[f::kTableBase] = table;
  in.w[f::kNSegments] = segments;
  return in;
}

// One engine's share of a step: the first op also waits on `wait`, the last one signals
// `signal`.
void EmitGroup(std::vector<Instr>* ops, int64_t wait, int64_t signal,
               const std::function<void(const Instr&)>& emit) {
  ops->front().w[isa::kWordWait] |= wait;
  ops->back().w[isa::kWordSignal] = signal;
  for (const Instr& in : *ops) emit(in);
  ops->clear();
}

// Element (i, j) of a matrix as a DRAM access of rows x cols elements starting there.
DramAccess Block(const DramAccess& m, int64_t i, int64_t j, int64_t rows, int64_t cols) {
  return {m.addr + i * m.row_stride + j * m.col_stride, rows, cols, m.row_stride, m.col_stride};
}

}  // namespace

LoopGemmPlan PlanLoopGemm(const OpId& id, const Instr& in, const Program& prog) {
  namespace f = isa::loop_gemm;
  ValidateInstr(id, in, prog);  // opcode, zero masks, unused words
  const MachineConfig& cfg = prog.config();
  LoopGemmPlan p;
  p.dim = cfg.dim;

  CheckAtLeast(id, "M", in[f::kM], 1);
  CheckAtLeast(id, "K", in[f::kK], 1);
  CheckAtLeast(id, "N", in[f::kN], 1);
  CheckAtLeast(id, "tile_m", in[f::kTileM], 1);
  CheckAtLeast(id, "tile_k", in[f::kTileK], 1);
  CheckAtLeast(id, "tile_n", in[f::kTileN], 1);
  CheckFlag(id, "has_d", in[f::kHasD]);
  CheckFlag(id, "has_bias", in[f::kHasBias]);
  CheckFlag(id, "has_act", in[f::kHasAct]);
  CheckAtLeast(id, "sp_base", in[f::kSpBase], 0);
  CheckAtLeast(id, "acc_base", in[f::kAccBase], 0);
  p.M = in[f::kM];
  p.K = in[f::kK];
  p.N = in[f::kN];
  p.has_d = in[f::kHasD] != 0;
  p.has_bias = in[f::kHasBias] != 0;
  p.has_act = in[f::kHasAct] != 0;

  // Matrices: byte operands, then every element inside one region.
  struct Matrix {
    DramAccess* out;
    int addr, row_stride, col_stride;
    const char *addr_name, *rs_name, *cs_name, *what;
    int64_t rows, cols;
    bool used;
  };
  const Matrix matrices[] = {
      {&p.a, f::kAAddr, f::kARowStride, f::kAColStride, "a_addr", "a_row_stride",
       "a_col_stride", "A (M x K) reads", p.M, p.K, true},
      {&p.b, f::kBAddr, f::kBRowStride, f::kBColStride, "b_addr", "b_row_stride",
       "b_col_stride", "B (K x N) reads", p.K, p.N, true},
      {&p.c, f::kCAddr, f::kCRowStride, f::kCColStride, "c_addr", "c_row_stride",
       "c_col_stride", "C (M x N) writes", p.M, p.N, true},
      {&p.d, f::kDAddr, f::kDRowStride, f::kDColStride, "d_addr", "d_row_stride",
       "d_col_stride", "D (M x N) reads", p.M, p.N, p.has_d},
  };
  for (const Matrix& m : matrices) {
    if (!m.used) continue;
    CheckByteOperand(id, m.addr_name, in[m.addr]);
    CheckByteOperand(id, m.rs_name, in[m.row_stride]);
    CheckByteOperand(id, m.cs_name, in[m.col_stride]);
    *m.out = {in[m.addr], m.rows, m.cols, in[m.row_stride], in[m.col_stride]};
    CheckDramAccess(id, prog, m.what, *m.out);
  }
  if (p.has_bias) {
    CheckByteOperand(id, "bias_addr", in[f::kBiasAddr]);
    p.bias_addr = in[f::kBiasAddr];
    CheckDramAccess(id, prog, "bias (N) reads", {p.bias_addr, 1, p.N, 0, isa::kElemBytes});
  }
  if (p.has_act) {
    p.act_table = in[f::kActTable];
    p.act_segments = in[f::kActSegments];
    CheckInRange(id, "act_segments", p.act_segments, 1, cfg.pwl_entries, "pwl_entries");
    CheckAtLeast(id, "act_table", p.act_table, 0);
    if (static_cast<i128>(p.act_table) + p.act_segments > cfg.pwl_entries) {
      Fail(id, Str("act_table ", p.act_table, " + act_segments ", p.act_segments,
                   " exceeds pwl_entries ", cfg.pwl_entries));
    }
  }

  // Buffer fit, as docs/ISA.md states it: sp_base + 2 * (tile_k * tile_m + tile_k * DIM *
  // tile_n) <= sp_rows and acc_base + 2 * tile_m * tile_n + tile_n <= acc_rows. Each tile
  // size alone is at most a memory's row count when this holds, which also keeps the products
  // below inside 128 bits.
  const int64_t dim = cfg.dim;
  const int64_t sp_base = in[f::kSpBase], acc_base = in[f::kAccBase];
  p.tile_m = in[f::kTileM];
  p.tile_k = in[f::kTileK];
  p.tile_n = in[f::kTileN];
  const bool sane = p.tile_m <= cfg.sp_rows && p.tile_k <= cfg.sp_rows && p.tile_n <= cfg.acc_rows;
  const i128 sp_buf_rows = static_cast<i128>(p.tile_k) * p.tile_m +
                           static_cast<i128>(p.tile_k) * dim * p.tile_n;
  if (!sane || sp_base + 2 * sp_buf_rows > cfg.sp_rows) {
    Fail(id, Str("buffers do not fit: sp_base ", sp_base, " + 2 x (tile_k ", p.tile_k,
                 " x tile_m ", p.tile_m, " + tile_k ", p.tile_k, " x DIM ", dim, " x tile_n ",
                 p.tile_n, ") = ", sane ? Str(static_cast<int64_t>(sp_base + 2 * sp_buf_rows)) : "too many",
                 " scratchpad rows, more than sp_rows ", cfg.sp_rows));
  }
  const i128 acc_buf_rows = static_cast<i128>(p.tile_m) * p.tile_n;
  if (acc_base + 2 * acc_buf_rows + p.tile_n > cfg.acc_rows) {
    Fail(id, Str("buffers do not fit: acc_base ", acc_base, " + 2 x tile_m ", p.tile_m,
                 " x tile_n ", p.tile_n, " + tile_n ", p.tile_n, " (bias rows) = ",
                 static_cast<int64_t>(acc_base + 2 * acc_buf_rows + p.tile_n),
                 " accumulator rows, more than acc_rows ", cfg.acc_rows));
  }
  p.sp_buf[0] = sp_base;
  p.sp_buf[1] = sp_base + static_cast<int64_t>(sp_buf_rows);
  p.acc_buf[0] = acc_base;
  p.acc_buf[1] = acc_base + static_cast<int64_t>(acc_buf_rows);
  p.bias_row = acc_base + 2 * static_cast<int64_t>(acc_buf_rows);

  const i128 steps = static_cast<i128>(CeilDiv(p.N, p.tile_n * dim)) * CeilDiv(p.M, p.tile_m) *
                     CeilDiv(p.K, p.tile_k * dim);
  const i128 ops_per_step = p.tile_k + 6 * p.tile_n + p.tile_k * p.tile_n;
  constexpr int64_t kMaxOps = isa::kMaxLoopGemmMicroOps;
  if (steps > kMaxOps || steps * ops_per_step > kMaxOps) {
    Fail(id, Str("expansion would exceed ", kMaxOps, " micro-ops; use larger tiles"));
  }
  return p;
}

void ExpandLoopGemm(const LoopGemmPlan& p, const std::function<void(const Instr&)>& emit) {
  const int64_t dim = p.dim;
  const int64_t group_n = p.tile_n * dim;  // output columns per N group
  const int64_t group_k = p.tile_k * dim;  // reduction elements per K group
  const int64_t n_groups = CeilDiv(p.N, group_n);
  const int64_t m_tiles = CeilDiv(p.M, p.tile_m);
  const int64_t k_groups = CeilDiv(p.K, group_k);
  const int64_t n_steps = n_groups * m_tiles * k_groups;  // (N group, M tile, K group) triples
  const int64_t n_tiles = n_groups * m_tiles;             // output tiles

  // Tokens compute -> load: "scratchpad buffer free" after every step's last compute op. The
  // loads of step s pop the one of step s - 2 (same buffer). The bias rows are single-buffered:
  // group g's bias is loaded in the step that adds it to the group's first tile, which must
  // follow every compute op of group g - 1. With k_groups >= 2 the token of step s - 2 already
  // guarantees that; with one K group the bias loads also pop the token of step s - 1.
  auto extra_pop = [&](int64_t g) { return p.has_bias && k_groups == 1 && g >= 1; };
  const int64_t last_popped = extra_pop(n_groups - 1) && m_tiles == 1 ? n_steps - 2 : n_steps - 3;
  int64_t next_free_token = 0;
  // Tokens store -> (compute, or load when D is preloaded): "accumulator buffer free".
  const int64_t acc_free_bit = p.has_d ? kLoadBit : kComputeBit;

  std::vector<Instr> ops;
  int64_t step = 0;  // scratchpad buffer = step % 2
  int64_t tile = 0;  // accumulator buffer = tile % 2
  for (int64_t g = 0; g < n_groups; ++g) {
    const int64_t n0 = g * group_n;
    const int64_t n_blocks = CeilDiv(std::min(group_n, p.N - n0), dim);
    auto block_cols = [&](int64_t nb) { return std::min(dim, p.N - n0 - nb * dim); };

    for (int64_t t = 0; t < m_tiles; ++t, ++tile) {
      const int64_t m0 = t * p.tile_m;
      const int64_t tm = std::min(p.tile_m, p.M - m0);
      const int64_t acc = p.acc_buf[tile % 2];
      auto out_rows = [&](int64_t nb) { return acc + nb * p.tile_m; };

      for (int64_t kg = 0; kg < k_groups; ++kg, ++step) {
        const int64_t k0 = kg * group_k;
        const int64_t kk = std::min(group_k, p.K - k0);
        const int64_t k_blocks = CeilDiv(kk, dim);
        auto block_k = [&](int64_t kb) { return std::min(dim, kk - kb * dim); };
        const bool first_k = kg == 0;
        const bool last_k = kg == k_groups - 1;
        const bool loads_bias = p.has_bias && t == 0 && last_k;
        const int64_t a_base = p.sp_buf[step % 2];
        const int64_t b_base = a_base + p.tile_k * p.tile_m;

        // Load engine: D into the output tile, the A and B tiles, then the group's bias rows.
        if (first_k && p.has_d) {
          for (int64_t nb = 0; nb < n_blocks; ++nb) {
            ops.push_back(MakeLoad(isa::kMemAccumulator, out_rows(nb),
                                   Block(p.d, m0, n0 + nb * dim, tm, block_cols(nb))));
          }
        }
        for (int64_t kb = 0; kb < k_blocks; ++kb) {
          ops.push_back(MakeLoad(isa::kMemScratchpad, a_base + kb * p.tile_m,
                                 Block(p.a, m0, k0 + kb * dim, tm, block_k(kb))));
        }
        for (int64_t nb = 0; nb < n_blocks; ++nb) {  // all K rows of one column block at once
          ops.push_back(MakeLoad(isa::kMemScratchpad, b_base + nb * group_k,
                                 Block(p.b, k0, n0 + nb * dim, kk, block_cols(nb))));
        }
        int64_t load_wait = first_k && p.has_d && tile >= 2 ? kStoreBit : 0;
        if (next_free_token <= step - 2) {
          load_wait |= kComputeBit;
          ++next_free_token;
        }
        if (loads_bias) {  // after the A and B loads, which need not wait for the extra token
          const size_t first_bias = ops.size();
          for (int64_t nb = 0; nb < n_blocks; ++nb) {
            const DramAccess row{p.bias_addr + (n0 + nb * dim) * isa::kElemBytes, 1,
                                 block_cols(nb), 0, isa::kElemBytes};
            ops.push_back(MakeLoad(isa::kMemAccumulator, p.bias_row + nb, row));
          }
          if (extra_pop(g) && next_free_token <= step - 1) {
            ops[first_bias].w[isa::kWordWait] = kComputeBit;
            ++next_free_token;
          }
        }
        EmitGroup(&ops, load_wait, kComputeBit, emit);

        // Compute engine: GEMMs into the output tile; after the last K group bias and act.
        for (int64_t nb = 0; nb < n_blocks; ++nb) {
          for (int64_t kb = 0; kb < k_blocks; ++kb) {
            const bool accumulate = !first_k || kb > 0 || p.has_d;
            ops.push_back(MakeGemm(a_base + kb * p.tile_m, b_base + nb * group_k + kb * dim,
                                   out_rows(nb), tm, block_k(kb), block_cols(nb), accumulate));
          }
        }
        if (last_k && p.has_bias) {
          for (int64_t nb = 0; nb < n_blocks; ++nb) {
            ops.push_back(MakeBiasAdd(out_rows(nb), p.bias_row + nb, tm));
          }
        }
        if (last_k && p.has_act) {
          for (int64_t nb = 0; nb < n_blocks; ++nb) {
            ops.push_back(MakePwl(out_rows(nb), tm, p.act_table, p.act_segments));
          }
        }
        const int64_t compute_wait =
            kLoadBit | (first_k && !p.has_d && tile >= 2 ? kStoreBit : 0);
        const int64_t compute_signal =
            (step <= last_popped ? kLoadBit : 0) | (last_k ? kStoreBit : 0);
        EmitGroup(&ops, compute_wait, compute_signal, emit);

        // Store engine: the finished output tile.
        if (last_k) {
          for (int64_t nb = 0; nb < n_blocks; ++nb) {
            ops.push_back(
                MakeStore(out_rows(nb), Block(p.c, m0, n0 + nb * dim, tm, block_cols(nb))));
          }
          EmitGroup(&ops, kComputeBit, tile + 2 < n_tiles ? acc_free_bit : 0, emit);
        }
      }
    }
  }
}

}  // namespace nm_accel
