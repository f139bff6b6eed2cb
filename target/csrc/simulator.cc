// Drives a program through validation/timing and execution.
#include "simulator.h"

#include <functional>

#include "loop_gemm.h"

namespace nm_accel {
namespace {

using OpFn = std::function<void(const OpId&, const Instr&)>;
using BarrierFn = std::function<void(const OpId&, bool begin)>;

// Calls on_op for every instruction, with each LOOP_GEMM replaced by its micro-ops bracketed
// by on_barrier(id, true) and on_barrier(id, false).
void ForEachOp(const Program& prog, const OpFn& on_op, const BarrierFn& on_barrier) {
  for (int64_t i = 0; i < prog.num_instr(); ++i) {
    const Instr in = prog.instr(i);
    const OpId id{i, -1, in.op()};
    if (in.op() != isa::kOpLoopGemm) {
      on_op(id, in);
      continue;
    }
    const LoopGemmPlan plan = PlanLoopGemm(id, in, prog);
    on_barrier(id, true);
    int64_t micro = 0;
    ExpandLoopGemm(plan, [&](const Instr& u) { on_op(OpId{i, micro++, u.op()}, u); });
    on_barrier(id, false);
  }
}

// Pass 1: static checks, timing, tokens and races; touches no memory.
StatsRecord Schedule(const Program& prog) {
  Scheduler scheduler(prog);
  ForEachOp(
      prog,
      [&](const OpId& id, const Instr& in) {
        ValidateInstr(id, in, prog);
        scheduler.Issue(id, in);
      },
      [&](const OpId& id, bool begin) {
        if (begin) {
          scheduler.BeginBarrier();
        } else {
          scheduler.EndBarrier(id);
        }
      });
  return scheduler.stats();
}

}  // namespace

StatsRecord RunProgram(const int64_t* words, int64_t n_words,
                       const std::vector<DramBuffer>& args) {
  const Program prog(words, n_words);
  CheckArguments(prog, args);
  const StatsRecord stats = Schedule(prog);

  // Pass 2: numerics, in program order.
  Executor executor(prog, args);
  ForEachOp(
      prog, [&](const OpId& id, const Instr& in) { executor.Execute(id, in); },
      [](const OpId&, bool) {});
  return stats;
}

StatsRecord EstimateProgram(const int64_t* words, int64_t n_words) {
  const Program prog(words, n_words);
  return Schedule(prog);
}

}  // namespace nm_accel
