// ctl: the JSON that dshmctl shows (CTL_QUERY, docs/dshmctl.md), built over
// a read-only view of the daemon: a query changes no state.
//
// Thread safety: REQUIRES the loop mutex.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "dshm/wire.h"
#include "thread_annotations.h"
#include "watch.h"

namespace dshm {

class Daemon;

// The largest CTL_REPLY: the payload bound of every message.
inline constexpr size_t kMaxCtlReply = DSHM_MAX_PAYLOAD;

// The answer to a CTL_QUERY for `what` (DSHM_CTL_SEGMENTS, _PEERS, _STATS).
// Its lists come from the input of peers and clients (every host's VMs in
// the owner's merged view, up to DSHM_MAX_STATS_VMS per host): they are cut
// so that the text fits in kMaxCtlReply bytes, and the object then has
// "truncated": true.  Only a configuration so large that its segments
// alone exceed the bound (not input) yields a longer text; the caller
// refuses to send it (EncodeBounded).
std::string CtlJson(const Daemon &d, uint32_t what) REQUIRES(loop_mutex);

}  // namespace dshm
