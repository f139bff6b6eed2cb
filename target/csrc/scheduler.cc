// Timing, dependency tokens and race detection (docs/ISA.md, "Dependency tokens" and "Costs").
#include "scheduler.h"

#include <algorithm>

namespace nm_accel {
namespace {

int64_t CheckedAdd(int64_t a, int64_t b, const char* what) {
  int64_t out;
  if (__builtin_add_overflow(a, b, &out)) throw SimError(Str(what, " overflows int64"));
  return out;
}

const char* RowName(int mem) {
  switch (mem) {
    case 0: return "scratchpad row";
    case 1: return "accumulator row";
    default: return "PWL table entry";
  }
}

}  // namespace

Scheduler::Scheduler(const Program& prog)
    : prog_(prog), cfg_(prog.config()), counters_(stats_, prog) {
  const int64_t sizes[kNumMemories] = {cfg_.sp_rows, cfg_.acc_rows, cfg_.pwl_entries};
  for (int m = 0; m < kNumMemories; ++m) {
    RowLog& log = rows_[m];
    const size_t n = static_cast<size_t>(sizes[m]);
    log.write_end.assign(n, 0);
    log.read_end.assign(n, 0);
    log.writer.assign(n, OpId{});
    log.reader.assign(n, OpId{});
  }
  stats_[isa::kStatLayerId] = cfg_.layer_id;
}

int64_t Scheduler::Dispatch(int queue) {
  std::deque<int64_t>& entries = queued_starts_[queue];
  int64_t room = 0;  // when the queue has room for one more entry
  if (static_cast<int64_t>(entries.size()) == cfg_.queue_depth) {
    room = entries.front();  // the oldest entry leaves when it starts
    entries.pop_front();
  }
  // LOOP_GEMM's unroller feeds each engine's queue directly (one sub-unroller per engine), so
  // its micro-ops never wait behind another engine's full queue.
  if (in_loop_) return room;
  dispatched_ = std::max(dispatched_, room);
  return dispatched_;
}

int64_t Scheduler::PopTokens(const OpId& id, const Instr& in, int queue, int64_t start,
                             int* binding) {
  *binding = -1;
  for (int q = 0; q < isa::kQueueCount; ++q) {
    if (!(in.wait() & (int64_t{1} << q))) continue;
    std::deque<int64_t>& channel = channels_[q][queue];
    if (channel.empty()) {
      throw SimError(Str("deadlock: ", Describe(id), " waits for a token from the ",
                         QueueName(q), " queue that no earlier instruction signalled"));
    }
    if (channel.front() > start) {
      start = channel.front();
      *binding = q;
    }
    channel.pop_front();
  }
  return start;
}

void Scheduler::CheckRaces(const OpId& id, const std::vector<Span>& spans, int64_t start) const {
  auto race = [&](const Span& s, int64_t row, const OpId& other, const char* other_verb,
                  int64_t other_end) {
    throw SimError(Str("race: ", Describe(id), s.write ? " writes " : " reads ", RowName(s.mem),
                       " ", row, " at cycle ", start, " before ", Describe(other), " finishes ",
                       other_verb, " it at cycle ", other_end, "; add a dependency token"));
  };
  for (const Span& s : spans) {
    const RowLog& log = rows_[s.mem];
    for (int64_t r = s.lo; r < s.hi; ++r) {
      if (log.write_end[r] > start) race(s, r, log.writer[r], "writing", log.write_end[r]);
      if (s.write && log.read_end[r] > start) race(s, r, log.reader[r], "reading", log.read_end[r]);
    }
  }
}

void Scheduler::RecordAccesses(const OpId& id, const std::vector<Span>& spans, int64_t end) {
  for (const Span& s : spans) {
    RowLog& log = rows_[s.mem];
    for (int64_t r = s.lo; r < s.hi; ++r) {
      if (s.write) {
        log.write_end[r] = end;
        log.writer[r] = id;
      } else if (end > log.read_end[r]) {
        log.read_end[r] = end;
        log.reader[r] = id;
      }
    }
  }
}

void Scheduler::Issue(const OpId& id, const Instr& in) {
  const int queue = QueueOf(in.op());
  const int64_t free = engine_free_[queue];
  const int64_t dispatched = Dispatch(queue);
  const bool is_dma = queue != isa::kQueueCompute;
  std::deque<int64_t>& landings = dma_landings_[queue];
  int64_t slot = 0;  // a DMA engine with all its DMAs in flight waits for the oldest to land
  if (is_dma && static_cast<int64_t>(landings.size()) == cfg_.dma_in_flight) {
    slot = landings.front();
    landings.pop_front();
  }
  int binding = -1;  // the queue whose token delayed the start past the rest, if any
  const int64_t start =
      PopTokens(id, in, queue, std::max({free, dispatched, slot}), &binding);
  if (start > free) {
    // Forward tokens (load -> compute -> store) carry data: from the load engine a DMA wait,
    // from the compute engine a dependency; backward tokens free a buffer (buffer full). With
    // no token to blame, the engine waited for one of its own DMAs to land (DMA), or the
    // instruction arrived late: the in-order dispatcher was held up by another engine's full
    // queue.
    const int cause =
        binding < 0 ? (slot >= dispatched ? isa::kStallCauseDma : isa::kStallCauseQueue)
        : binding > queue ? isa::kStallCauseFull
        : binding == isa::kQueueLoad ? isa::kStallCauseDma : isa::kStallCauseDep;
    counters_.Add(static_cast<isa::Stat>(isa::kStatLoadStallDma + isa::kStallCauseCount * queue + cause),
        start - free);
  }
  queued_starts_[queue].push_back(start);
  const InstrRules& rules = RulesOf(in.op());
  const bool is_gemm = in.op() == isa::kOpGemm;
  const Timing cost =
      rules.cost(in, CostContext{cfg_, prog_, is_gemm && start == gemm_chain_end_, last_gemm_m_});
  const int64_t engine_done = CheckedAdd(start, cost.busy, "the cycle count");
  const int64_t end = CheckedAdd(engine_done, cost.latency, "the cycle count");
  if (queue == isa::kQueueCompute) {
    gemm_chain_end_ = is_gemm ? end : -1;
    if (is_gemm) last_gemm_m_ = in[isa::gemm::kM];
  }

  // A DMA load writes on chip as its data lands, after the latency; everything else touches
  // its rows from its start. (So back-to-back loads of one engine land in order, race-free.)
  const std::vector<Span> spans = rules.accesses(in);
  CheckRaces(id, spans, rules.lands_late ? start + cost.latency : start);
  RecordAccesses(id, spans, end);

  engine_free_[queue] = engine_done;
  if (is_dma) landings.push_back(end);
  last_end_ = std::max(last_end_, end);
  for (int q = 0; q < isa::kQueueCount; ++q) {
    if (in.signal() & (int64_t{1} << q)) channels_[queue][q].push_back(end);
  }
  counters_.Add(static_cast<isa::Stat>(isa::kStatLoadBusy + queue), cost.busy);
  stats_[isa::kStatCycles] = last_end_;
  rules.count(in, counters_);
}

void Scheduler::BeginBarrier() {
  engine_free_.fill(last_end_);
  in_loop_ = true;
  std::swap(channels_, saved_channels_);  // the expansion starts with empty channels
  counters_.Add(isa::kStatNLoopGemm, 1);
}

void Scheduler::EndBarrier(const OpId& id) {
  for (const auto& row : channels_) {
    for (const auto& channel : row) {
      // The expansion pops every token it pushes; a leftover one is a simulator bug.
      if (!channel.empty()) Fail(id, "internal error: LOOP_GEMM expansion left a token behind");
    }
  }
  std::swap(channels_, saved_channels_);
  engine_free_.fill(last_end_);
  in_loop_ = false;
}

}  // namespace nm_accel
