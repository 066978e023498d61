// dshmd configuration: a GKeyFile (default /etc/dshm/dshmd.conf).  The
// notes after '#' below explain the keys; in a file a comment is a line of
// its own (data/dshmd.conf.example), a '#' after a value is refused.
//
//   [dshmd]
//   host-id = 1                      # 0..63, unique among the hosts
//   listen = 198.18.0.1:7450         # peer TCP address of this host
//   socket = /run/dshm/dshmd.sock    # client unix socket
//   poll-us = 0                      # busy-poll window after each event, µs
//                                    # (0: block in poll at once; see docs)
//   ack-timeout-ms = 10000           # a peer that does not acknowledge an
//                                    # invalidation in time is disconnected;
//                                    # a migrating VM's write-back waits as long
//                                    # for its ack after losing the owner
//   adopt-timeout-ms = 30000         # how long the locks of a VM that migrated
//                                    # away are kept for its destination, ms
//                                    # (100..3600000)
//   auth = true                      # peers prove the shared key at HELLO
//                                    # (docs/protocol.md §2.1); false: any
//                                    # process that reaches `listen` is a peer
//                                    # (logged as a warning at every start)
//   auth-key-file = /etc/dshm/authkey  # the cluster's key: the same file on
//                                    # every host, mode 0600 (auth.h)
//   socket-mode = 0600               # mode of `socket` (octal, 0600..0777)
//   socket-group = kvm               # group of `socket` (name or gid; default:
//                                    # dshmd's)
//   peer-timeout-ms = 10000          # a peer whose TCP connection goes unanswered
//                                    # (keepalive, TCP_USER_TIMEOUT) or that owes
//                                    # an answer (FETCH, P_RELEASE) too long is
//                                    # lost, as at a close (100..3600000;
//                                    # docs/protocol.md section 8)
//   write-ahead-pages = 16           # a client writing pages in sequence gets
//                                    # up to this many more pages made writable
//                                    # (and twinned) per write fault, 0..256;
//                                    # 0: one page per fault (docs/protocol.md §3)
//
//   membership = static              # who is alive: static (the [peer] groups
//                                    # below, a peer is alive while its TCP
//                                    # session is) or corosync (the members of
//                                    # the CPG group "dshm", which announce their
//                                    # addresses; no [peer] groups; votequorum
//                                    # decides whether this host may grant
//                                    # locks; protocol.md §8, membership.h)
//
//   [policy]                         # optional: access monitor and ownership
//                                    # policy (monitor.h, docs/policy.md)
//   window-s = 60                    # sliding window of the monitor, 1..3600 s
//   report-ms = 1000                 # how often a non-owner host reports its
//                                    # monitor figures to the owner, 100..60000
//   log-s = 60                       # period of the monitor's structured log,
//                                    # 0 = off, 0..86400
//   strong-min-events = 100          # a VM is strongly linked to a segment with
//   strong-min-share = 0.25          # at least this many events per window AND
//                                    # this share (0..1) of the segment's events
//   move-ownership = true            # ownership may follow the most active,
//                                    # strongly linked VM when it migrates
//
//   [peer h2]                        # one group per other host (static only)
//   host-id = 2
//   address = 198.18.0.2:7450
//
//   [segment counters]               # one group per segment this host serves
//   size = 1M                        # bytes, multiple of 4096 (K/M/G suffixes)
//   owner = 1                        # host id of the initial owner
//   allow = UUID;UUID                # optional: only local clients whose
//                                    # ATTACH names one of these VM UUIDs
//                                    # (QEMU's -uuid) may attach; without it
//                                    # any client of the socket may (warned)
//
// Every host of a cluster lists the same segments with the same size and
// owner (and should use the same [policy]).  With membership = corosync a
// segment's owner may be any host id (the host need not be up yet), and
// `listen` must be an address the other hosts can dial (not 0.0.0.0 or
// ::): it is what this host announces in the group.
//
// Strictness (GKeyFile alone accepts much that is surely a mistake):
// parsing checks everything and reports the first problem as
// "FILE:LINE: [GROUP] KEY: what", with, for an unknown group or key, the
// closest known one ("did you mean ...?", edit distance) or the list of
// known ones.  Errors are: unknown groups and keys in any group; a group
// given twice (GKeyFile would merge them) and a key set twice in a group
// (GKeyFile keeps the last), found by scanning the raw text; an empty value
// (`host-id =` read as 0 by GKeyFile's integer parser); a value containing
// ` #` or ` ;` (GKeyFile has no inline comments: the comment is part of the
// value); numbers out of range, including sizes that overflow 64 bits; a
// relative `socket`; segment names outside IsValidSegmentName() (frame.h;
// so not `.` or `..`); no segment at all.  LoadConfig() also checks that
// `listen` resolves (ParseConfig() does no I/O).
//
// Thread safety: a Config is a plain value.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "monitor.h"
#include "status.h"

namespace dshm {

struct PeerConfig {
    std::string name;  // group name after "peer "
    uint32_t host_id = 0;
    std::string address;  // host:port
};

struct SegmentConfig {
    std::string name;
    uint64_t size = 0;
    uint32_t owner = 0;
    // VM UUIDs (lower-case 8-4-4-4-12) a local client's ATTACH must name;
    // empty: any client (protocol.md section 14).
    std::vector<std::string> allow;
};

// Who is alive (protocol.md section 8): the configured peers and their TCP
// sessions, or the members of the CPG group (membership.h).
enum class MembershipMode { kStatic, kCorosync };
const char *MembershipModeName(MembershipMode m);

struct Config {
    uint32_t host_id = 0;
    std::string host_name;  // from the [dshmd] name key, else "host<id>"
    std::string listen;     // host:port
    std::string socket_path = "/run/dshm/dshmd.sock";
    uint32_t socket_mode = 0600;
    std::string socket_group;  // name or gid; empty: dshmd's own
    // Peer authentication (auth.h, protocol.md section 2.1).
    bool auth = true;
    std::string auth_key_file = "/etc/dshm/authkey";
    // Not a key of the file: the key itself, read from auth_key_file by
    // Daemon::Start (NoAuthKey() with auth off) unless set before (tests).
    std::vector<uint8_t> auth_key;
    uint32_t poll_us = 0;
    uint32_t ack_timeout_ms = 10000;
    uint32_t adopt_timeout_ms = 30000;
    // Liveness of a peer (protocol.md section 8): keepalive and
    // TCP_USER_TIMEOUT of its connection, and the deadlines of the requests
    // sent to it (Liveness).
    uint32_t peer_timeout_ms = 10000;
    uint32_t write_ahead_pages = 16;
    // A non-owner fetches up to this many pages ahead of a sequential
    // reader's fault (0 = off; at most 1024; protocol.md section 3).
    uint32_t read_ahead_pages = 64;
    // With poll-us = 0: connections and userfaultfds are waited for by the
    // I/O thread (watch.h, EnableIoThread).  Key io-thread; the former
    // name, waiter-threads, is still read.
    bool io_thread = true;
    // Single-writer marks (protocol.md section 6.1): as the owner, grant
    // them.  A host always honours the marks it is granted.
    bool exclusive_pages = true;
    // Whether dshmd runs the I/O thread: only when it never busy-polls.
    bool UsesIoThread() const { return poll_us == 0 && io_thread; }
    // Key membership; static by default until every integration test runs
    // on corosync (issue 19).
    MembershipMode membership = MembershipMode::kStatic;
    PolicyConfig policy;  // [policy]
    std::vector<PeerConfig> peers;
    std::vector<SegmentConfig> segments;
    // "GROUP/KEY" of every [dshmd] and [policy] key the file set (the
    // former name waiter-threads counts as io-thread): FormatConfig()
    // marks the others as defaults.
    std::set<std::string> given;
};

// Parses a key file's text.  `origin` names it in error messages.
Status ParseConfig(const std::string &text, const std::string &origin, Config *out);

// Reads and parses a file, then checks that `listen` resolves
// (ResolveListen).  A file that cannot be read is E_INTERNAL, an invalid
// one E_PROTO (dshmd exits 3 and 2: hostd/exit_codes.h).
Status LoadConfig(const std::string &path, Config *out);

// Fails when c.listen does not resolve to an address to bind (getaddrinfo
// with AI_PASSIVE).  `origin` names the file in the message.
Status ResolveListen(const Config &c, const std::string &origin);

// The whole effective configuration as a key file that parses back to the
// same Config: every key of [dshmd] and [policy], each one that the file did
// not set commented out and marked "(default)", then the peers and segments.
std::string FormatConfig(const Config &c);

// Levenshtein distance (for "did you mean" suggestions).
size_t EditDistance(const std::string &a, const std::string &b);

// Splits "host:port" (port 1..65535).
bool SplitHostPort(const std::string &addr, std::string *host, uint16_t *port);

}  // namespace dshm
