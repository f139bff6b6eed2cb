// Timing model: three in-order engines, dependency-token FIFOs, race detection, statistics;
// each instruction's own cost, accesses and counters come from its rules (instr.h).
#ifndef NM_ACCEL_SCHEDULER_H_
#define NM_ACCEL_SCHEDULER_H_

#include <array>
#include <cstdint>
#include <deque>
#include <vector>

#include "instr.h"

namespace nm_accel {

class Scheduler {
 public:
  explicit Scheduler(const Program& prog);

  // Times one validated instruction or micro-op: pops its tokens, checks its on-chip accesses
  // against unfinished ones, pushes its tokens and counts it. Throws SimError on a deadlock or
  // a race.
  void Issue(const OpId& id, const Instr& in);

  // LOOP_GEMM is a barrier with token channels of its own: Begin waits for every earlier
  // instruction, End makes every later one wait for the expansion.
  void BeginBarrier();
  void EndBarrier(const OpId& id);

  const StatsRecord& stats() const { return stats_; }

 private:
  // Per row: when the last writer and the latest-finishing reader complete, and who they are.
  struct RowLog {
    std::vector<int64_t> write_end, read_end;
    std::vector<OpId> writer, reader;
  };
  using Channels = std::array<std::array<std::deque<int64_t>, isa::kQueueCount>, isa::kQueueCount>;

  // When the in-order dispatcher can hand the instruction to `queue`: not before the previous
  // instruction, and not while `queue` is full (its oldest entry has not started).
  int64_t Dispatch(int queue);
  int64_t PopTokens(const OpId& id, const Instr& in, int queue, int64_t start, int* binding);
  void CheckRaces(const OpId& id, const std::vector<Span>& spans, int64_t start) const;
  void RecordAccesses(const OpId& id, const std::vector<Span>& spans, int64_t end);

  const Program& prog_;
  const MachineConfig& cfg_;
  std::array<int64_t, isa::kQueueCount> engine_free_{};
  int64_t dispatched_ = 0;  // when the dispatcher handed out the latest instruction
  bool in_loop_ = false;    // timing a LOOP_GEMM expansion
  // Per queue: start cycles of its latest `queue_depth` instructions (the queue's entries).
  std::array<std::deque<int64_t>, isa::kQueueCount> queued_starts_;
  // Per DMA engine: completion cycles of its latest `dma_in_flight` DMAs (in order).
  std::array<std::deque<int64_t>, isa::kQueueCount> dma_landings_;
  Channels channels_;
  Channels saved_channels_;  // the program's channels while a LOOP_GEMM runs on fresh ones
  int64_t last_end_ = 0;     // latest completion so far (total cycles)
  int64_t gemm_chain_end_ = -1;  // end of the last compute op if it was a GEMM, else -1
  int64_t last_gemm_m_ = 0;      // rows streamed by that GEMM
  std::array<RowLog, kNumMemories> rows_;
  StatsRecord stats_{};
  Counters counters_;  // adds to stats_
};

}  // namespace nm_accel

#endif  // NM_ACCEL_SCHEDULER_H_
