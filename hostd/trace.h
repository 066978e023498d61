// trace: debugging and benchmarking stamps of dshmd (no protocol state).
//
//   DSHMD_TRACE=/path   Trace(): one line per page event, with the first 8
//                       u64 of the page and of its twin when given.
//   DSHMD_PHASES=/path  Phase(): one line per phase of a release or of a
//                       remote read fault (bench/phases.sh reads them).
//
// Both are off (a load and a branch) unless their variable names a file.
// OpenTraces() reads the variables; CloseTraces() flushes and closes.
//
// Thread safety: REQUIRES the loop mutex (the files are plain stdio
// streams written by whichever thread runs a callback); NowNs() is safe
// anywhere.
#pragma once

#include <cstdint>

namespace dshm {

// CLOCK_MONOTONIC in ns.
uint64_t NowNs();

void OpenTraces();
void CloseTraces();

// A trace line: event name, three numbers, optionally a page and its twin.
void Trace(const char *what, uint32_t a, uint32_t b, uint32_t c, const uint8_t *page = nullptr,
           const uint8_t *twin = nullptr);

// A phase stamp: CLOCK_MONOTONIC ns, the phase, two numbers, the CPU time
// the calling thread has used (ns: the part of a step spent running, not
// waiting) and its thread id (a step may start on one of dshmd's threads
// and end on the other).  Cheap enough to leave on while benchmarking.
void Phase(const char *what, uint32_t a, uint64_t b);

}  // namespace dshm
