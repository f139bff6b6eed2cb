// Entry point of the nm accelerator simulator: validate, time, then execute one program.
#ifndef NM_ACCEL_SIMULATOR_H_
#define NM_ACCEL_SIMULATOR_H_

#include <cstdint>
#include <vector>

#include "executor.h"
#include "program.h"
#include "scheduler.h"

namespace nm_accel {

// Runs a program against argument buffers given in region order. First the whole program is
// validated and timed (tokens, races, statistics) without touching any memory, then executed;
// so a rejected program leaves the arguments untouched (except a PWL breakpoint error, which
// depends on loaded data and is found while executing). Throws SimError.
StatsRecord RunProgram(const int64_t* words, int64_t n_words,
                       const std::vector<DramBuffer>& args);

// The first pass of RunProgram alone: validates and times the program (the same statistics
// RunProgram returns) without argument buffers and without touching any memory. The cost
// model for tools that compare schedules (tile choices, tuning). Throws SimError.
StatsRecord EstimateProgram(const int64_t* words, int64_t n_words);

}  // namespace nm_accel

#endif  // NM_ACCEL_SIMULATOR_H_
