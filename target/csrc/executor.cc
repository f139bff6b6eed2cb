// The machine's memories: DRAM regions bound to the call's tensors (zero copy) or allocated as
// scratch, and the on-chip scratchpad, accumulator and PWL table. Each instruction's numerics
// are in target/csrc/instr/<name>.cc. Build with -ffp-contract=off: every product and sum must
// round to fp32 separately, never as a fused multiply-add.
#include "executor.h"

#include <cmath>
#include <cstdlib>
#include <cstring>

namespace nm_accel {

void CheckArguments(const Program& prog, const std::vector<DramBuffer>& args) {
  const int64_t expected = prog.num_argument_regions();
  if (static_cast<int64_t>(args.size()) != expected) {
    throw SimError(Str("program has ", expected, " argument regions but ", args.size(),
                       " tensors were passed after the program"));
  }
  size_t next = 0;
  for (size_t i = 0; i < prog.regions().size(); ++i) {
    const Region& r = prog.regions()[i];
    if (r.kind != isa::kRegionKindArgument) continue;
    const DramBuffer& buf = args[next];
    if (buf.dtype != r.dtype) {
      throw SimError(Str("tensor ", next, " (call argument ", next + 1, ") is ",
                         ElemTypeName(buf.dtype), " but is bound to region ", i, " of ",
                         ElemTypeName(r.dtype), " elements"));
    }
    if (buf.bytes != r.size) {
      throw SimError(Str("tensor ", next, " (call argument ", next + 1, ") has ", buf.bytes,
                         " bytes but is bound to region ", i, " of ", r.size, " bytes (",
                         r.size / ElemBytesOf(r.dtype), " ", ElemTypeName(r.dtype),
                         " elements)"));
    }
    ++next;
  }
}

MachineState::MachineState(const Program& prog, const std::vector<DramBuffer>& args)
    : prog_(prog), cfg_(prog.config()) {
  size_t next_arg = 0;
  for (size_t i = 0; i < prog.regions().size(); ++i) {
    const Region& r = prog.regions()[i];
    if (r.kind == isa::kRegionKindArgument) {
      region_data_.push_back(static_cast<char*>(args[next_arg++].data));
      continue;
    }
    // calloc: zero pages come lazily, and an absurd size fails cleanly instead of aborting.
    char* data = static_cast<char*>(std::calloc(static_cast<size_t>(r.size), 1));
    if (data == nullptr) {
      throw SimError(Str("cannot allocate scratch region ", i, " of ", r.size, " bytes"));
    }
    scratch_.emplace_back(data);
    region_data_.push_back(data);
  }
  sp_.assign(static_cast<size_t>(cfg_.sp_rows * cfg_.dim), 0.0f);
  acc_.assign(static_cast<size_t>(cfg_.acc_rows * cfg_.dim), 0.0f);
  breakpoint.assign(static_cast<size_t>(cfg_.pwl_entries), 0.0f);
  slope.assign(static_cast<size_t>(cfg_.pwl_entries), 0.0f);
  intercept.assign(static_cast<size_t>(cfg_.pwl_entries), 0.0f);
}

const char* MachineState::Bytes(int64_t addr) const {
  const int64_t region = prog_.RegionAt(addr);  // validated: always found
  return region_data_[region] + (addr - prog_.regions()[region].base);
}

float* MachineState::Dram(int64_t addr) {
  return reinterpret_cast<float*>(const_cast<char*>(Bytes(addr)));
}

int64_t MachineState::DtypeAt(int64_t addr) const {
  return prog_.regions()[prog_.RegionAt(addr)].dtype;
}

int64_t MachineState::ReadInt(int64_t addr) const {
  const char* p = Bytes(addr);
  switch (DtypeAt(addr)) {
    case isa::kElemTypeInt64: {
      int64_t v;
      std::memcpy(&v, p, sizeof(v));
      return v;
    }
    case isa::kElemTypeInt32: {
      int32_t v;
      std::memcpy(&v, p, sizeof(v));
      return v;
    }
    case isa::kElemTypeBool:
      return *p != 0;
    case isa::kElemTypeUint8:
      return static_cast<unsigned char>(*p);
    case isa::kElemTypeInt8:
      return static_cast<signed char>(*p);
    default:
      throw SimError("internal error: integer read of a float32 DRAM region");
  }
}

float MachineState::ReadAsFloat(int64_t addr) const {
  if (DtypeAt(addr) == isa::kElemTypeFloat32) {
    float v;
    std::memcpy(&v, Bytes(addr), sizeof(v));
    return v;
  }
  return static_cast<float>(ReadInt(addr));  // round to nearest (even), as ONNX Cast does
}

void MachineState::WriteFromFloat(const OpId& id, int64_t addr, float v) {
  char* p = const_cast<char*>(Bytes(addr));
  const int64_t dtype = DtypeAt(addr);
  if (dtype == isa::kElemTypeFloat32) {
    std::memcpy(p, &v, sizeof(v));
    return;
  }
  if (dtype == isa::kElemTypeBool) {  // ONNX Cast: +-0 is false, everything else (NaN too) true
    *p = v != 0.0f || std::isnan(v);
    return;
  }
  // ONNX Cast to an integer truncates toward zero; out of range is undefined there, an error
  // naming the value here.
  const double t = std::trunc(static_cast<double>(v));
  double lo = -9223372036854775808.0, hi = 9223372036854775807.0;
  if (dtype == isa::kElemTypeInt32) lo = -2147483648.0, hi = 2147483647.0;
  if (dtype == isa::kElemTypeUint8) lo = 0.0, hi = 255.0;
  if (dtype == isa::kElemTypeInt8) lo = -128.0, hi = 127.0;
  if (!(t >= lo && t <= hi)) {  // NaN fails both comparisons
    Fail(id, Str("value ", v, " stored to a ", ElemTypeName(dtype), " region at byte address ",
                 addr, " is outside that type's range"));
  }
  switch (dtype) {
    case isa::kElemTypeInt64: {
      const int64_t x = static_cast<int64_t>(t);
      std::memcpy(p, &x, sizeof(x));
      break;
    }
    case isa::kElemTypeInt32: {
      const int32_t x = static_cast<int32_t>(t);
      std::memcpy(p, &x, sizeof(x));
      break;
    }
    default:
      *p = static_cast<char>(static_cast<int64_t>(t));
  }
}

float* MachineState::Row(int64_t mem, int64_t row) {
  return (mem == isa::kMemScratchpad ? sp_.data() : acc_.data()) + row * cfg_.dim;
}

}  // namespace nm_accel
