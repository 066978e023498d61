// Membership: who is alive (docs/protocol.md section 8).
//
// membership = static (config.h): the configured [peer] groups; a peer is
// alive while its TCP session is (Peers), and this host is always quorate.
// Nothing here runs.
//
// membership = corosync: dshmd joins the closed process group "dshm" of
// the host's corosync (libcpg) and follows votequorum (libquorum).  The
// group is the authority on who is alive:
//   - Every member announces itself in the group (ANNOUNCE below: host id,
//     incarnation, name, data-path address), when it joins and again at
//     every configuration change that brings a new member, so that each
//     newcomer learns every member.  Corosync delivers the announcements
//     and configuration changes in one agreed order to every member.
//   - A member that announced itself is admitted (Admits): only then does
//     Peers dial it (the host with the smaller id dials, as ever) or accept
//     its HELLO, which must carry the announced incarnation.  A host that
//     is not a member is never up.
//   - A member that leaves the group (its dshmd died: tens of ms; its host
//     or corosync was lost: the token timeout plus consensus) is lost at
//     that point of the agreed order on every host: Peers::Lose closes its
//     session, which runs the one peer-loss path (Daemon::OnPeerLost) if it
//     was up.  Several members leaving in one change are lost in the order
//     of corosync's left list, which is the same on every host.
//   - A TCP close of a member's session is still a session loss (the same
//     path: messages in flight are gone) followed by a redial: the member
//     is alive until the group says otherwise.
//   - Quorum: a host whose partition is not quorate grants no lock
//     (Locker: E_NO_QUORUM to the requester, local or remote); it says so
//     in its log and in dshmctl.  When its corosync goes away (killed,
//     stopped) dshmd loses every member, counts itself not quorate, and
//     tries to connect again every second.
//   - Two members announcing the same host id: the first one in the
//     agreed order keeps it; the later one is logged and never admitted,
//     and a dshmd that finds its own id taken counts itself not quorate.
// Start() fails (E_OWNER_LOST, dshmd exits kExitUnavailable) when corosync
// cannot be reached.
//
// The events On* are what libcpg and libquorum deliver; they are public so
// that daemon_test can play them without a corosync.
//
// Thread safety: every method REQUIRES the loop mutex; libcpg's and
// libquorum's fds are watched on the main loop (WatchFd), no thread of
// their own.
#pragma once

#include <glib.h>

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "status.h"
#include "thread_annotations.h"
#include "watch.h"

namespace dshm {

class Daemon;

// The one message dshmd multicasts in the group (little-endian, packed as
// laid out; strings NUL-terminated within their fields).
struct MemberAnnounce {
    uint32_t magic;    // kAnnounceMagic
    uint16_t version;  // 1
    uint16_t type;     // 1 = ANNOUNCE
    uint32_t host_id;
    uint32_t reserved;
    uint64_t incarnation;
    char name[64];
    char address[64];  // host:port of the data path (the listen key)
};
static_assert(sizeof(MemberAnnounce) == 152);
inline constexpr uint32_t kAnnounceMagic = 0x4d485344;  // "DSHM"

// A process in the group, as corosync names it.
struct CpgMember {
    uint32_t nodeid = 0;
    uint32_t pid = 0;
    uint32_t reason = 0;  // in a left/joined list: CPG_REASON_*
    auto operator<=>(const CpgMember &o) const {
        return std::pair(nodeid, pid) <=> std::pair(o.nodeid, o.pid);
    }
    bool operator==(const CpgMember &o) const { return nodeid == o.nodeid && pid == o.pid; }
};

struct Member {
    CpgMember cpg;
    uint32_t host_id = 0;
    uint64_t incarnation = 0;
    std::string name, address;
};

class Membership {
  public:
    explicit Membership(Daemon &d);
    ~Membership();
    Membership(const Membership &) = delete;
    Membership &operator=(const Membership &) = delete;

    // corosync: connects to libcpg and libquorum, joins the group, watches
    // their fds.  Static: nothing.
    Status Start() REQUIRES(loop_mutex);

    bool corosync() const;
    // May this host grant locks?  Static: always.
    bool Quorate() const REQUIRES(loop_mutex) { return quorate_ && !id_taken_; }
    // Is host `host` (with `incarnation`, unless 0) a member that
    // announced itself?  Static: always.
    bool Admits(uint32_t host, uint64_t incarnation = 0) const REQUIRES(loop_mutex);
    // The announced members by host id (this host not included).
    const std::map<uint32_t, Member> &members() const REQUIRES(loop_mutex) { return by_host_; }
    // "corosync, quorate, members 1 2 3" and the like (log, dshmctl).
    std::string Describe() const REQUIRES(loop_mutex);
    bool connected() const REQUIRES(loop_mutex) { return cpg_ != 0; }
    // Counts a lock request refused without quorum; returns the count since
    // quorum was last lost.
    uint64_t NoteRefusal() REQUIRES(loop_mutex) {
        refused_total_++;
        return ++refused_;
    }
    uint64_t refused_total() const REQUIRES(loop_mutex) { return refused_total_; }

    // --- the events (libcpg, libquorum; tests) ---
    // A configuration change of the group.  `self` tells which member is
    // this process.
    void OnConfChange(const std::vector<CpgMember> &members, const std::vector<CpgMember> &left,
                      const std::vector<CpgMember> &joined) REQUIRES(loop_mutex);
    // A message of the group from `from` (untrusted bytes: checked here).
    void OnMessage(CpgMember from, const void *msg, size_t len) REQUIRES(loop_mutex);
    void OnQuorum(bool quorate) REQUIRES(loop_mutex);
    // The connection to corosync broke.
    void OnCorosyncLost(const std::string &why) REQUIRES(loop_mutex);
    // Who this process is in the group (tests set it; Start asks libcpg).
    void SetSelf(CpgMember self) REQUIRES(loop_mutex) { self_ = self; }

  private:
    Status Connect() REQUIRES(loop_mutex);
    void Disconnect() REQUIRES(loop_mutex);
    void Announce() REQUIRES(loop_mutex);
    void Lose(const Member &m, const std::string &why) REQUIRES(loop_mutex);
    static gboolean OnCpgReady(gint fd, GIOCondition cond, gpointer self);
    static gboolean OnQuorumReady(gint fd, GIOCondition cond, gpointer self);

    Daemon &d_;
    CpgMember self_ GUARDED_BY(loop_mutex);
    uint64_t cpg_ GUARDED_BY(loop_mutex) = 0;     // cpg_handle_t, 0: none
    uint64_t quorum_ GUARDED_BY(loop_mutex) = 0;  // quorum_handle_t, 0: none
    guint cpg_watch_ GUARDED_BY(loop_mutex) = 0;
    guint quorum_watch_ GUARDED_BY(loop_mutex) = 0;
    guint retry_timer_ GUARDED_BY(loop_mutex) = 0;  // reconnect, announce again
    bool quorate_ GUARDED_BY(loop_mutex);
    bool id_taken_ GUARDED_BY(loop_mutex) = false;        // another member has our host id
    bool self_announced_ GUARDED_BY(loop_mutex) = false;  // ours was delivered
    uint64_t refused_ GUARDED_BY(loop_mutex) = 0;         // since quorum was lost
    uint64_t refused_total_ GUARDED_BY(loop_mutex) = 0;
    std::map<CpgMember, uint32_t> hosts_ GUARDED_BY(loop_mutex);  // announced: process -> host
    std::map<uint32_t, Member> by_host_ GUARDED_BY(loop_mutex);
    std::vector<CpgMember> group_ GUARDED_BY(loop_mutex);  // the group's members, announced or not
};

}  // namespace dshm
