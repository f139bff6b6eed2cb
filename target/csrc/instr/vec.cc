// VEC: elementwise add / mul / max / select of accumulator rows, b optionally one broadcast row
// (docs/ISA.md, "VEC"). Max propagates NaN like numpy.maximum; select (ONNX Where) reads its
// condition from the destination rows: a NaN in the branch not taken does not leak.
#include <algorithm>
#include <cmath>

#include "../instr.h"

namespace nm_accel {
namespace {
namespace f = isa::vec;

void Validate(const OpId& id, const Instr& in, const Program& prog) {
  const MachineConfig& cfg = prog.config();
  CheckInRange(id, "op", in[f::kOp], isa::kVecOpFirst, isa::kVecOpLast);
  CheckAtLeast(id, "rows", in[f::kRows], 1);
  CheckFlag(id, "b_broadcast", in[f::kBBroadcast]);
  CheckRows(id, cfg, isa::kMemAccumulator, "dst_row", in[f::kDstRow], "rows", in[f::kRows]);
  CheckRows(id, cfg, isa::kMemAccumulator, "a_row", in[f::kARow], "rows", in[f::kRows]);
  if (in[f::kBBroadcast]) {
    CheckRows(id, cfg, isa::kMemAccumulator, "b_row", in[f::kBRow], "broadcast rows", 1);
  } else {
    CheckRows(id, cfg, isa::kMemAccumulator, "b_row", in[f::kBRow], "rows", in[f::kRows]);
  }
  CheckUnusedZero(id, in, f::kEnd);
}

Timing Cost(const Instr& in, const CostContext&) { return {in[f::kRows], 0}; }

std::vector<Span> Accesses(const Instr& in) {
  const int64_t b_rows = in[f::kBBroadcast] ? 1 : in[f::kRows];
  std::vector<Span> spans = {{kAcc, in[f::kARow], in[f::kARow] + in[f::kRows], false},
                             {kAcc, in[f::kBRow], in[f::kBRow] + b_rows, false},
                             {kAcc, in[f::kDstRow], in[f::kDstRow] + in[f::kRows], true}};
  if (in[f::kOp] == isa::kVecOpSelect) {  // the condition is read where the result goes
    spans.push_back({kAcc, in[f::kDstRow], in[f::kDstRow] + in[f::kRows], false});
  }
  return spans;
}

void Count(const Instr& in, Counters& c) {
  const int64_t rows = in[f::kRows], dim = c.cfg().dim;
  c.Add(isa::kStatNVec, 1);
  c.Add(isa::kStatVecElements, rows * dim);
  const int64_t read_rows = rows + (in[f::kBBroadcast] ? 1 : rows) +
                            (in[f::kOp] == isa::kVecOpSelect ? rows : 0);
  c.Mem(isa::kMemAccumulator, false, read_rows * dim);
  c.Mem(isa::kMemAccumulator, true, rows * dim);
}

void Execute(const OpId&, const Instr& in, MachineState& s) {
  const int64_t rows = in[f::kRows], dim = s.cfg().dim, op = in[f::kOp];
  s.tmp.resize(static_cast<size_t>(rows * dim));
  for (int64_t i = 0; i < rows; ++i) {
    const float* a = s.Row(isa::kMemAccumulator, in[f::kARow] + i);
    const float* b = s.Row(isa::kMemAccumulator, in[f::kBRow] + (in[f::kBBroadcast] ? 0 : i));
    const float* cond = s.Row(isa::kMemAccumulator, in[f::kDstRow] + i);
    float* out = s.tmp.data() + i * dim;
    for (int64_t j = 0; j < dim; ++j) {
      const float x = a[j], y = b[j];
      switch (op) {
        case isa::kVecOpAdd: out[j] = x + y; break;
        case isa::kVecOpMul: out[j] = x * y; break;
        case isa::kVecOpSelect: out[j] = cond[j] != 0.0f ? x : y; break;
        default:  // max, NaN-propagating like numpy.maximum
          out[j] = std::isnan(x) ? x : std::isnan(y) ? y : (x > y ? x : y);
          break;
      }
    }
  }
  std::copy(s.tmp.begin(), s.tmp.end(), s.Row(isa::kMemAccumulator, in[f::kDstRow]));
}

}  // namespace

extern const InstrRules kVecRules{Validate, Cost, Accesses, Count, Execute};

}  // namespace nm_accel
