// The exit statuses of dshm's host tools (dshmd, dshmctl, dshm-attach): the
// C++ names of the one table of include/dshm/exit_codes.h, which the guest
// tools share (and dshm(7) documents).  The host tools use 0..3:
//
//   0  kExitOk           success
//   1  kExitFailed       the command ran and failed: a check failed
//                        (dshm-attach verify, count --exclusive), dshmd could
//                        not start (socket in use, no memory for a segment)
//   2  kExitUsage        bad command line (unknown option, missing argument),
//                        or dshmd's configuration file is invalid
//   3  kExitUnavailable  what the command needs is not there: dshmd cannot be
//                        reached or refused the request (no such segment), a
//                        file cannot be read
//
// A signal's default action gives 128 + N (143 for SIGTERM): dshmd handles
// SIGINT and SIGTERM (exit 0 after a clean shutdown) and SIGHUP (reload).
#pragma once

#include "dshm/exit_codes.h"

namespace dshm {

inline constexpr int kExitOk = DSHM_EXIT_OK;
inline constexpr int kExitFailed = DSHM_EXIT_FAILED;
inline constexpr int kExitUsage = DSHM_EXIT_USAGE;
inline constexpr int kExitUnavailable = DSHM_EXIT_UNAVAILABLE;

}  // namespace dshm
