// Decoding and static validation of programs (docs/ISA.md, "Program layout" and "Errors").
#include "program.h"

#include <algorithm>
#include <limits>

#include "instr.h"

namespace nm_accel {
namespace {

constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();

std::string Int128Str(i128 v) {
  if (v > kInt64Max) return "2^63+";
  return std::to_string(static_cast<int64_t>(v));
}

[[noreturn]] void FailHeader(const std::string& message) {
  throw SimError("program header: " + message);
}

}  // namespace

void CheckRows(const OpId& id, const MachineConfig& cfg, int64_t mem, const char* row_name,
               int64_t row, const char* count_name, int64_t count) {
  if (row < 0) Fail(id, Str(row_name, " ", row, " must be >= 0"));
  const int64_t limit = cfg.rows_of(mem);
  if (static_cast<i128>(row) + count > limit) {
    Fail(id, Str(row_name, " ", row, " + ", count_name, " ", count, " exceeds ", MemName(mem),
                 " rows ", limit));
  }
}

void CheckUnusedZero(const OpId& id, const Instr& in, int first_unused) {
  for (int i = first_unused; i < isa::kInstrWords; ++i) {
    if (in[i] != 0) {
      Fail(id, Str("word ", i, " is ", in[i], " but must be 0 (unused by ", OpName(in.op()), ")"));
    }
  }
}

void CheckInRange(const OpId& id, const char* name, int64_t v, int64_t lo, int64_t hi,
                  const char* hi_name) {
  if (v < lo || v > hi) {
    Fail(id, Str(name, " ", v, " out of range ", lo, "..", hi,
                 hi_name ? Str(" (", hi_name, ")") : std::string()));
  }
}

void CheckAtLeast(const OpId& id, const char* name, int64_t v, int64_t lo) {
  if (v < lo) Fail(id, Str(name, " ", v, " must be >= ", lo));
}

void CheckFlag(const OpId& id, const char* name, int64_t v) {
  if (v != 0 && v != 1) Fail(id, Str(name, " ", v, " must be 0 or 1"));
}

// DRAM byte addresses and strides: non-negative multiples of 4.
void CheckByteOperand(const OpId& id, const char* name, int64_t v) {
  if (v < 0) Fail(id, Str(name, " ", v, " must be >= 0"));
  if (v % isa::kElemBytes != 0) Fail(id, Str(name, " ", v, " is not a multiple of 4"));
}

void CheckTable(const OpId& id, const MachineConfig& cfg, int64_t table_base,
                int64_t n_segments) {
  CheckInRange(id, "n_segments", n_segments, 1, cfg.pwl_entries, "pwl_entries");
  if (table_base < 0) Fail(id, Str("table_base ", table_base, " must be >= 0"));
  if (static_cast<i128>(table_base) + n_segments > cfg.pwl_entries) {
    Fail(id, Str("table_base ", table_base, " + n_segments ", n_segments,
                 " exceeds pwl_entries ", cfg.pwl_entries));
  }
}

const char* OpName(int64_t op) { return isa::OpcodeName(op); }

const char* MemName(int64_t mem) {
  return mem == isa::kMemScratchpad ? "scratchpad" : "accumulator";
}

const char* QueueName(int q) {
  switch (q) {
    case isa::kQueueLoad: return "load";
    case isa::kQueueCompute: return "compute";
    default: return "store";
  }
}

int QueueOf(int64_t op) {
  const int queue = isa::OpcodeQueue(op);
  return queue >= 0 ? queue : isa::kQueueCompute;
}

static std::string OpLabel(int64_t op) {
  const char* name = OpName(op);
  return name ? std::string(name) : Str("opcode ", op);
}

std::string Describe(const OpId& id) {
  if (id.micro < 0) return Str("instruction ", id.index, " (", OpLabel(id.op), ")");
  return Str("instruction ", id.index, " (LOOP_GEMM) micro-op ", id.micro, " (", OpLabel(id.op),
             ")");
}

void Fail(const OpId& id, const std::string& message) {
  throw SimError(Describe(id) + ": " + message);
}

Program::Program(const int64_t* words, int64_t n_words) : words_(words), n_words_(n_words) {
  DecodeHeader();
  DecodeRegions();
}

void Program::DecodeHeader() {
  if (n_words_ < isa::kHeaderWords) {
    FailHeader(Str("program has ", n_words_, " words, fewer than the ", isa::kHeaderWords,
                   "-word header (truncated?)"));
  }
  const int64_t* h = words_;
  if (h[isa::kHdrMagic] != isa::kMagic) {
    FailHeader(Str("bad magic 0x", std::hex, h[isa::kHdrMagic], " (expected 0x", isa::kMagic,
                   " \"NMAC\")"));
  }
  if (h[isa::kHdrVersion] != isa::kVersion) {
    FailHeader(Str("ISA version ", h[isa::kHdrVersion], " is not supported (simulator implements ",
                   isa::kVersion, ")"));
  }
  const int64_t n_regions = h[isa::kHdrNRegions];
  num_instr_ = h[isa::kHdrNInstr];
  if (n_regions < 0) FailHeader(Str("n_regions ", n_regions, " must be >= 0"));
  if (num_instr_ < 0) FailHeader(Str("n_instr ", num_instr_, " must be >= 0"));
  const i128 expected = static_cast<i128>(isa::kHeaderWords) +
                        static_cast<i128>(n_regions) * isa::kRegionWords +
                        static_cast<i128>(num_instr_) * isa::kInstrWords;
  if (expected != n_words_) {
    FailHeader(Str("program has ", n_words_, " words but the header announces ",
                   Int128Str(expected), " (16 + 4 * n_regions ", n_regions, " + 32 * n_instr ",
                   num_instr_, "): truncated or corrupt program"));
  }

  MachineConfig& c = config_;
  c.layer_id = h[isa::kHdrLayerId];
  c.dim = h[isa::kHdrDim];
  c.sp_rows = h[isa::kHdrSpRows];
  c.acc_rows = h[isa::kHdrAccRows];
  c.pwl_entries = h[isa::kHdrPwlEntries];
  c.dtype = h[isa::kHdrOperandDtype];
  c.dram_bytes = h[isa::kHdrDramBytes];
  c.dram_bw = h[isa::kHdrDramBw];
  c.dram_latency = h[isa::kHdrDramLatency];
  c.dataflow = h[isa::kHdrDataflow];
  c.queue_depth = h[isa::kHdrQueueDepth];
  c.dma_in_flight = h[isa::kHdrDmaInFlight];

  auto check = [](const char* name, int64_t v, int64_t lo, int64_t hi) {
    if (v < lo || v > hi) FailHeader(Str(name, " ", v, " out of range ", lo, "..", hi));
  };
  check("DIM", c.dim, 1, isa::kMaxDim);
  check("sp_rows", c.sp_rows, 1, isa::kMaxOnChipRows);
  check("acc_rows", c.acc_rows, 1, isa::kMaxOnChipRows);
  check("pwl_entries", c.pwl_entries, 1, isa::kMaxPwlEntries);
  check("operand dtype", c.dtype, isa::kDTypeFirst, isa::kDTypeLast);
  check("dram_bytes", c.dram_bytes, 1, kInt64Max);
  check("DRAM bandwidth", c.dram_bw, 1, kInt64Max);
  check("DRAM latency", c.dram_latency, 0, isa::kMaxDramLatency);
  check("dataflow", c.dataflow, isa::kDataflowFirst, isa::kDataflowLast);
  check("queue depth", c.queue_depth, 1, isa::kMaxQueueDepth);
  check("DMAs in flight", c.dma_in_flight, 1, isa::kMaxDmaInFlight);
  constexpr int64_t kMaxElements = isa::kMaxOnChipElements;
  if (c.sp_rows * c.dim > kMaxElements || c.acc_rows * c.dim > kMaxElements) {
    FailHeader(Str("on-chip memories larger than ", kMaxElements,
                   " elements are not supported (sp_rows ", c.sp_rows, ", acc_rows ", c.acc_rows,
                   ", DIM ", c.dim, ")"));
  }
  for (int i = isa::kHdrEnd; i < isa::kHeaderWords; ++i) {
    if (h[i] != 0) FailHeader(Str("reserved word ", i, " is ", h[i], " but must be 0"));
  }
}

void Program::DecodeRegions() {
  const int64_t n_regions = words_[isa::kHdrNRegions];
  const int64_t dram_bytes = config_.dram_bytes;
  regions_.reserve(static_cast<size_t>(n_regions));
  for (int64_t i = 0; i < n_regions; ++i) {
    const int64_t* r = words_ + isa::kHeaderWords + i * isa::kRegionWords;
    Region reg{r[isa::kRegBase], r[isa::kRegSize], r[isa::kRegKind], r[isa::kRegDtype]};
    const std::string name = Str("region ", i, ": ");
    if (reg.base < 0 || reg.base % isa::kElemBytes != 0) {
      throw SimError(name + Str("base ", reg.base, " must be a non-negative multiple of 4"));
    }
    if (reg.dtype < isa::kElemTypeFirst || reg.dtype > isa::kElemTypeLast) {
      throw SimError(name + Str("dtype ", reg.dtype, " must be 0 (float32), 1 (int32), 2 "
                                "(int64), 3 (bool), 4 (uint8) or 5 (int8)"));
    }
    const int64_t elem = ElemBytesOf(reg.dtype);
    if (reg.size <= 0 || reg.size % elem != 0) {
      throw SimError(name + Str("size ", reg.size, " must be a positive multiple of ", elem,
                                " (", ElemTypeName(reg.dtype), " elements)"));
    }
    if (reg.kind != isa::kRegionKindArgument && reg.kind != isa::kRegionKindScratch) {
      throw SimError(name + Str("kind ", reg.kind, " must be 0 (argument) or 1 (scratch)"));
    }
    if (static_cast<i128>(reg.base) + reg.size > dram_bytes) {
      throw SimError(name + Str("[", reg.base, ", ", Int128Str(static_cast<i128>(reg.base) +
                                                                reg.size),
                                ") ends past dram_bytes ", dram_bytes));
    }
    regions_.push_back(reg);
  }
  by_base_.resize(regions_.size());
  for (size_t i = 0; i < by_base_.size(); ++i) by_base_[i] = static_cast<int64_t>(i);
  std::sort(by_base_.begin(), by_base_.end(),
            [&](int64_t a, int64_t b) { return regions_[a].base < regions_[b].base; });
  for (size_t i = 1; i < by_base_.size(); ++i) {
    const Region& prev = regions_[by_base_[i - 1]];
    const Region& cur = regions_[by_base_[i]];
    if (prev.end() > cur.base) {
      throw SimError(Str("regions ", by_base_[i - 1], " [", prev.base, ", ", prev.end(), ") and ",
                         by_base_[i], " [", cur.base, ", ", cur.end(), ") overlap"));
    }
  }
}

int64_t Program::num_argument_regions() const {
  return std::count_if(regions_.begin(), regions_.end(),
                       [](const Region& r) { return r.kind == isa::kRegionKindArgument; });
}

Instr Program::instr(int64_t i) const {
  Instr in;
  const int64_t* src = words_ + isa::kHeaderWords +
                       static_cast<int64_t>(regions_.size()) * isa::kRegionWords +
                       i * isa::kInstrWords;
  std::copy(src, src + isa::kInstrWords, in.w.begin());
  return in;
}

int64_t Program::RegionAt(int64_t addr) const {
  // Last region whose base is <= addr.
  auto it = std::upper_bound(by_base_.begin(), by_base_.end(), addr,
                             [&](int64_t a, int64_t idx) { return a < regions_[idx].base; });
  if (it == by_base_.begin()) return -1;
  const int64_t idx = *(it - 1);
  return addr < regions_[idx].end() ? idx : -1;
}

int64_t Program::RegionContaining(int64_t lo, int64_t hi) const {
  const int64_t idx = RegionAt(lo);
  return (idx >= 0 && hi <= regions_[idx].end()) ? idx : -1;
}

int64_t ElemBytesOf(int64_t elem_type) {
  switch (elem_type) {
    case isa::kElemTypeInt64:
      return 8;
    case isa::kElemTypeBool:
    case isa::kElemTypeUint8:
    case isa::kElemTypeInt8:
      return 1;
    default:
      return 4;
  }
}

const char* ElemTypeName(int64_t elem_type) {
  switch (elem_type) {
    case isa::kElemTypeInt32:
      return "int32";
    case isa::kElemTypeInt64:
      return "int64";
    case isa::kElemTypeBool:
      return "bool";
    case isa::kElemTypeUint8:
      return "uint8";
    case isa::kElemTypeInt8:
      return "int8";
    default:
      return "float32";
  }
}

int64_t CheckDramAccess(const OpId& id, const Program& prog, const char* what,
                        const DramAccess& a, bool integer_ok) {
  const int64_t at = prog.RegionAt(a.addr);
  const int64_t elem = at >= 0 ? ElemBytesOf(prog.regions()[at].dtype) : isa::kElemBytes;
  // Strides are non-negative, so the first and last elements bound the access.
  const i128 lo = a.addr;
  const i128 hi = lo + static_cast<i128>(a.rows - 1) * a.row_stride +
                  static_cast<i128>(a.cols - 1) * a.col_stride + elem;
  const int64_t region = hi <= kInt64Max ? prog.RegionContaining(a.addr, static_cast<int64_t>(hi))
                                         : -1;
  if (region < 0) {
    const std::string where =
        at >= 0 ? Str("region ", at, " is [", prog.regions()[at].base, ", ",
                      prog.regions()[at].end(), ")")
                : Str("no region contains address ", a.addr);
    Fail(id, Str(what, " DRAM bytes [", a.addr, ", ", Int128Str(hi), ") (", a.rows, " x ",
                 a.cols, " elements, strides ", a.row_stride, "/", a.col_stride,
                 ") which are not inside one region (", where, ")"));
  }
  const Region& r = prog.regions()[region];
  if (r.dtype != isa::kElemTypeFloat32 && !integer_ok) {
    Fail(id, Str(what, " DRAM region ", region, ", which holds ", ElemTypeName(r.dtype),
                 " elements; only LOAD (converting to fp32), GATHER (indices) and STORE "
                 "(converting from fp32) access integer regions"));
  }
  if ((a.addr - r.base) % elem != 0 || a.row_stride % elem != 0 || a.col_stride % elem != 0) {
    Fail(id, Str(what, " ", ElemTypeName(r.dtype), " region ", region, " at byte offset ",
                 a.addr - r.base, " with strides ", a.row_stride, "/", a.col_stride,
                 ": not multiples of its ", elem, "-byte elements"));
  }
  return region;
}

void ValidateOpcodeAndMasks(const OpId& id, const Instr& in) {
  const int64_t op = in.op();
  if (op < isa::kOpFirst || op > isa::kOpLast) Fail(id, Str("unknown opcode ", op));
  if (op == isa::kOpLoopGemm) {
    if (in.wait() != 0 || in.signal() != 0) {
      Fail(id, Str("wait mask ", in.wait(), " and signal mask ", in.signal(),
                   " must be 0 (LOOP_GEMM is a barrier)"));
    }
    return;
  }
  const int own = QueueOf(op);
  const std::pair<const char*, int64_t> masks[] = {{"wait", in.wait()}, {"signal", in.signal()}};
  for (const auto& [name, mask] : masks) {
    if (mask < 0 || mask >= (1 << isa::kQueueCount)) {
      Fail(id, Str(name, " mask ", mask, " has bits outside 0..2"));
    }
    if (mask & (int64_t{1} << own)) {
      Fail(id, Str(name, " mask ", mask, " sets bit ", own, ", the instruction's own (",
                   QueueName(own), ") queue"));
    }
  }
}

void ValidateInstr(const OpId& id, const Instr& in, const Program& prog) {
  ValidateOpcodeAndMasks(id, in);
  if (in.op() == isa::kOpLoopGemm) {
    CheckUnusedZero(id, in, isa::loop_gemm::kEnd);  // the rest: PlanLoopGemm
  } else {
    RulesOf(in.op()).validate(id, in, prog);
  }
}

}  // namespace nm_accel
