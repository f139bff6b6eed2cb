// tvm-ffi global functions of the simulator:
//   nm_accel.run(program, *region_tensors)  -- called by the Relax VM via R.call_dps_packed
//   nm_accel.estimate(program) -> int64 tensor (1, len(STAT_FIELDS)); timing pass only, no memory
//   nm_accel.take_stats() -> int64 tensor (n, len(STAT_FIELDS)); clears the log
//   nm_accel.version() -> ISA version
//   nm_accel.stat_fields() -> Array<String>, STAT_FIELDS as compiled in
//   nm_accel.isa_digest() -> sha256 of target/isa_spec.json that isa.h was generated from
//   nm_accel.opcodes() -> Array<String>, "NAME code queue operand_end" per opcode as compiled in
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/error.h>
#include <tvm/ffi/function.h>
#include <tvm/ffi/reflection/registry.h>
#include <tvm/ffi/string.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "simulator.h"

namespace nm_accel {
namespace {

namespace ffi = tvm::ffi;

// Statistics of every successful run since the last take_stats (the VM may call from any
// thread).
std::mutex g_stats_mutex;
std::vector<StatsRecord> g_stats;

std::string DTypeStr(DLDataType t) {
  return Str("(code ", int(t.code), ", bits ", int(t.bits), ", lanes ", int(t.lanes), ")");
}

// The tensor at call position `pos`, checked to be a contiguous CPU tensor of `want` dtype.
// Returns its data pointer and element count.
const void* CheckTensor(const ffi::PackedArgs& args, int pos, DLDataType want,
                        const char* want_name, int64_t* numel) {
  std::optional<ffi::TensorView> view = args[pos].try_cast<ffi::TensorView>();
  if (!view.has_value()) {
    TVM_FFI_THROW(TypeError) << "nm_accel.run: argument " << pos << " is a "
                             << args[pos].GetTypeKey() << ", expected a tensor";
  }
  const ffi::TensorView& t = *view;
  const std::string name = pos == 0 ? "program tensor (argument 0)"
                                    : Str("tensor argument ", pos);
  if (t.device().device_type != kDLCPU) {
    TVM_FFI_THROW(ValueError) << "nm_accel.run: " << name << " must be on the CPU, not device type "
                              << int(t.device().device_type);
  }
  const DLDataType dt = t.dtype();
  if (dt.code != want.code || dt.bits != want.bits || dt.lanes != want.lanes) {
    TVM_FFI_THROW(ValueError) << "nm_accel.run: " << name << " must be " << want_name
                              << ", got dtype " << DTypeStr(dt);
  }
  int64_t n = 1;
  for (int i = 0; i < t.ndim(); ++i) {
    const int64_t extent = t.shape()[i];
    if (extent < 0 || __builtin_mul_overflow(n, extent, &n) || n > (int64_t{1} << 60)) {
      TVM_FFI_THROW(ValueError) << "nm_accel.run: " << name << " has an invalid shape";
    }
  }
  if (!t.IsContiguous()) {
    TVM_FFI_THROW(ValueError) << "nm_accel.run: " << name << " must be contiguous";
  }
  const char* data = static_cast<const char*>(t.data_ptr());
  if (n > 0 && data == nullptr) {
    TVM_FFI_THROW(ValueError) << "nm_accel.run: " << name << " has no data";
  }
  data += t.byte_offset();
  if (reinterpret_cast<uintptr_t>(data) % (want.bits / 8) != 0) {
    TVM_FFI_THROW(ValueError) << "nm_accel.run: " << name << " data is not aligned";
  }
  *numel = n;
  return data;
}

// DLPack types of the DRAM element types (enum ElemType order).
const DLDataType kDramDLTypes[isa::kElemTypeCount] = {
    {kDLFloat, 32, 1}, {kDLInt, 32, 1}, {kDLInt, 64, 1},
    {kDLBool, 8, 1},   {kDLUInt, 8, 1}, {kDLInt, 8, 1}};

// The element type of the tensor at call position `pos`: integer and bool tensors bind to integer
// regions, anything else is checked as float32 (and refused with its dtype named).
int64_t DramDType(const ffi::PackedArgs& args, int pos) {
  std::optional<ffi::TensorView> view = args[pos].try_cast<ffi::TensorView>();
  if (!view.has_value()) return isa::kElemTypeFloat32;  // CheckTensor names the bad argument
  const DLDataType dt = view->dtype();
  for (int64_t t = isa::kElemTypeFirst; t <= isa::kElemTypeLast; ++t) {
    const DLDataType& want = kDramDLTypes[t];
    if (dt.code == want.code && dt.bits == want.bits && dt.lanes == want.lanes) return t;
  }
  return isa::kElemTypeFloat32;
}

void Run(ffi::PackedArgs args, ffi::Any* /*ret*/) {
  if (args.size() < 1) {
    TVM_FFI_THROW(ValueError) << "nm_accel.run: expects the program tensor, then one tensor "
                                 "(float32, int32 or int64) per argument region";
  }
  int64_t n_words = 0;
  const auto* words = static_cast<const int64_t*>(
      CheckTensor(args, 0, DLDataType{kDLInt, 64, 1}, "int64", &n_words));
  std::vector<DramBuffer> buffers;
  for (int pos = 1; pos < args.size(); ++pos) {
    int64_t numel = 0;
    const int64_t dtype = DramDType(args, pos);
    const void* data = CheckTensor(args, pos, kDramDLTypes[dtype], ElemTypeName(dtype), &numel);
    buffers.push_back({const_cast<void*>(data), numel * ElemBytesOf(dtype), dtype});
  }
  StatsRecord stats;
  try {
    stats = RunProgram(words, n_words, buffers);
  } catch (const SimError& e) {
    TVM_FFI_THROW(ValueError) << e.what();
  } catch (const std::bad_alloc&) {
    TVM_FFI_THROW(ValueError) << "nm_accel.run: out of memory while simulating";
  }
  std::lock_guard<std::mutex> lock(g_stats_mutex);
  g_stats.push_back(stats);
}

struct CpuAlloc {
  void AllocData(DLTensor* t) {
    t->data = std::malloc(std::max<size_t>(ffi::GetDataSize(*t), 1));
    if (t->data == nullptr) TVM_FFI_THROW(RuntimeError) << "out of memory";
  }
  void FreeData(DLTensor* t) { std::free(t->data); }
};

ffi::Tensor StatsTensor(const std::vector<StatsRecord>& records) {
  const int64_t n = static_cast<int64_t>(records.size());
  ffi::Tensor out = ffi::Tensor::FromNDAlloc(CpuAlloc(), ffi::ShapeView({n, isa::kStatCount}),
                                             DLDataType{kDLInt, 64, 1}, DLDevice{kDLCPU, 0});
  auto* dst = static_cast<int64_t*>(out.data_ptr());
  for (const StatsRecord& r : records) dst = std::copy(r.begin(), r.end(), dst);
  return out;
}

// nm_accel.estimate(program) -> int64 tensor (1, len(STAT_FIELDS)): the timing pass only.
void Estimate(ffi::PackedArgs args, ffi::Any* ret) {
  if (args.size() != 1) {
    TVM_FFI_THROW(ValueError) << "nm_accel.estimate: expects only the program tensor, got "
                              << args.size() << " arguments";
  }
  int64_t n_words = 0;
  const auto* words = static_cast<const int64_t*>(
      CheckTensor(args, 0, DLDataType{kDLInt, 64, 1}, "int64", &n_words));
  StatsRecord stats;
  try {
    stats = EstimateProgram(words, n_words);
  } catch (const SimError& e) {
    TVM_FFI_THROW(ValueError) << e.what();
  } catch (const std::bad_alloc&) {
    TVM_FFI_THROW(ValueError) << "nm_accel.estimate: out of memory while scheduling";
  }
  *ret = StatsTensor({stats});
}

ffi::Tensor TakeStats() {
  std::vector<StatsRecord> records;
  {
    std::lock_guard<std::mutex> lock(g_stats_mutex);
    records.swap(g_stats);
  }
  return StatsTensor(records);
}

ffi::Array<ffi::String> StatFields() {
  ffi::Array<ffi::String> names;
  for (const char* name : isa::kStatNames) names.push_back(name);
  return names;
}

ffi::Array<ffi::String> Opcodes() {
  ffi::Array<ffi::String> ops;
  for (int64_t op = isa::kOpFirst; op <= isa::kOpLast; ++op) {
    ops.push_back(Str(isa::OpcodeName(op), " ", op, " ", isa::OpcodeQueue(op), " ",
                      isa::OpcodeEnd(op)));
  }
  return ops;
}

}  // namespace
}  // namespace nm_accel

TVM_FFI_STATIC_INIT_BLOCK() {
  namespace refl = tvm::ffi::reflection;
  refl::GlobalDef()
      .def_packed("nm_accel.run", nm_accel::Run)
      .def_packed("nm_accel.estimate", nm_accel::Estimate)
      .def("nm_accel.take_stats", nm_accel::TakeStats)
      .def("nm_accel.version", []() -> int64_t { return nm_accel::isa::kVersion; })
      .def("nm_accel.stat_fields", nm_accel::StatFields)
      .def("nm_accel.isa_digest", []() -> tvm::ffi::String { return nm_accel::isa::kSpecDigest; })
      .def("nm_accel.opcodes", nm_accel::Opcodes);
}
