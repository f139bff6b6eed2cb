// Functional model: executes validated instructions against the machine's memories, each by
// its own rules (instr.h).
#ifndef NM_ACCEL_EXECUTOR_H_
#define NM_ACCEL_EXECUTOR_H_

#include <vector>

#include "instr.h"

namespace nm_accel {

// Checks that `args` match the program's argument regions (count and byte sizes).
void CheckArguments(const Program& prog, const std::vector<DramBuffer>& args);

class Executor {
 public:
  Executor(const Program& prog, const std::vector<DramBuffer>& args) : state_(prog, args) {}

  // Executes one validated instruction or micro-op.
  void Execute(const OpId& id, const Instr& in) { RulesOf(in.op()).execute(id, in, state_); }

 private:
  MachineState state_;
};

}  // namespace nm_accel

#endif  // NM_ACCEL_EXECUTOR_H_
