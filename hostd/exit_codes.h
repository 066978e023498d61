// The exit statuses of dshm's host tools: dshmd, dshmctl, dshm-attach (one
// table, also in README.md "Exit statuses").
//
//   0  kExitOk           success
//   1  kExitFailed       the command ran and failed: a check failed
//                        (dshm-attach verify, count --exclusive), dshmd could
//                        not start (socket in use, no memory for a segment)
//   2  kExitUsage        bad command line (unknown option, missing argument),
//                        or dshmd's configuration file is invalid
//   3  kExitUnavailable  what the command needs is not there: dshmd cannot be
//                        reached or refused the request (no such segment), a
//                        file cannot be read, dshmd with membership = corosync
//                        cannot reach corosync
//
// A signal's default action gives 128 + N (143 for SIGTERM): dshmd handles
// SIGINT and SIGTERM (exit 0 after a clean shutdown) and SIGHUP (reload).
#pragma once

namespace dshm {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitUnavailable = 3;

}  // namespace dshm
