// ctl: the JSON that dshmctl shows (CTL_QUERY, docs/dshmctl.md), built over
// a read-only view of the daemon: a query changes no state.
//
// Thread safety: REQUIRES the loop mutex.
#pragma once

#include <cstdint>
#include <string>

#include "thread_annotations.h"
#include "watch.h"

namespace dshm {

class Daemon;

// The answer to a CTL_QUERY for `what` (DSHM_CTL_SEGMENTS, _PEERS, _STATS).
std::string CtlJson(const Daemon &d, uint32_t what) REQUIRES(loop_mutex);

}  // namespace dshm
