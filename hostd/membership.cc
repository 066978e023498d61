#include "membership.h"

#include <corosync/cpg.h>
#include <corosync/quorum.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "daemon.h"
#include "frame.h"
#include "notify.h"
#include "peers.h"

namespace dshm {
namespace {

constexpr const char kGroup[] = "dshm";
constexpr guint kRetryMs = 1000;  // reconnecting to corosync

const char *ReasonName(uint32_t r) {
    switch (r) {
        case CPG_REASON_JOIN:
            return "joined";
        case CPG_REASON_LEAVE:
            return "left the group";
        case CPG_REASON_NODEDOWN:
            return "its host left the cluster (node down)";
        case CPG_REASON_NODEUP:
            return "its host joined the cluster";
        case CPG_REASON_PROCDOWN:
            return "its dshmd exited (process down)";
        default:
            return "unknown reason";
    }
}

std::string CsError(cs_error_t e) {
    return "error " + std::to_string(static_cast<int>(e)) + " (" + cs_strerror(e) + ")";
}

// A NUL-terminated string inside a fixed field, else nullopt.
bool FieldString(const char *field, size_t n, std::string *out) {
    const void *nul = memchr(field, 0, n);
    if (!nul)
        return false;
    *out = std::string(field, static_cast<const char *>(nul) - field);
    return true;
}

Membership *FromHandle(cpg_handle_t h) {
    void *ctx = nullptr;
    cpg_context_get(h, &ctx);
    return static_cast<Membership *>(ctx);
}

void OnCpgDeliver(cpg_handle_t h, const struct cpg_name *, uint32_t nodeid, uint32_t pid, void *msg,
                  size_t len) {
    loop_mutex.AssertHeld();
    if (Membership *m = FromHandle(h))
        m->OnMessage(CpgMember{nodeid, pid, 0}, msg, len);
}

std::vector<CpgMember> List(const struct cpg_address *a, size_t n) {
    std::vector<CpgMember> out;
    for (size_t i = 0; i < n; i++)
        out.push_back(CpgMember{a[i].nodeid, a[i].pid, a[i].reason});
    return out;
}

void OnCpgConfChange(cpg_handle_t h, const struct cpg_name *, const struct cpg_address *members,
                     size_t nmembers, const struct cpg_address *left, size_t nleft,
                     const struct cpg_address *joined, size_t njoined) {
    loop_mutex.AssertHeld();
    if (Membership *m = FromHandle(h))
        m->OnConfChange(List(members, nmembers), List(left, nleft), List(joined, njoined));
}

// libquorum has no context per handle in its v0 model: the one Membership
// of this process (dshmd has one Daemon; daemon_test never connects).
Membership *g_quorum_owner = nullptr;

void OnQuorumNotify(quorum_handle_t, uint32_t quorate, uint64_t, uint32_t, uint32_t *) {
    loop_mutex.AssertHeld();
    if (g_quorum_owner)
        g_quorum_owner->OnQuorum(quorate != 0);
}

}  // namespace

Membership::Membership(Daemon &d) : d_(d), quorate_(!corosync()) {}

Membership::~Membership() {
    if (retry_timer_)
        g_source_remove(retry_timer_);
    Disconnect();
}

bool Membership::corosync() const {
    return d_.cfg().membership == MembershipMode::kCorosync;
}

Status Membership::Start() {
    if (!corosync())
        return Status::OK();
    // Messages for a segment's owner queue until it is up, as with a
    // configured peer that is down: every owner has a Peer from the start.
    for (const auto &sc : d_.cfg().segments) {
        if (sc.owner != d_.host_id())
            d_.peers().AddMember(sc.owner, "", "");
    }
    Status st = Connect();
    if (st.ok())
        g_message("membership: corosync, CPG group %s, node %u pid %u", kGroup, self_.nodeid,
                  self_.pid);
    return st;
}

Status Membership::Connect() {
    cpg_model_v1_data_t model = {};
    model.model = CPG_MODEL_V1;
    model.cpg_deliver_fn = OnCpgDeliver;
    model.cpg_confchg_fn = OnCpgConfChange;
    cpg_handle_t h = 0;
    cs_error_t e =
        cpg_model_initialize(&h, CPG_MODEL_V1, reinterpret_cast<cpg_model_data_t *>(&model), this);
    if (e != CS_OK) {
        return Status::OwnerLost("membership = corosync, but corosync cannot be reached (" +
                                 CsError(e) +
                                 "): is corosync running on this host (systemctl status "
                                 "corosync, corosync-quorumtool -s)?");
    }
    cpg_ = h;
    unsigned int nodeid = 0;
    if ((e = cpg_local_get(h, &nodeid)) != CS_OK) {
        Disconnect();
        return Status::OwnerLost("corosync: cpg_local_get: " + CsError(e));
    }
    self_ = CpgMember{nodeid, static_cast<uint32_t>(getpid()), 0};
    struct cpg_name group = {};
    group.length = sizeof kGroup - 1;
    memcpy(group.value, kGroup, group.length);
    for (int tries = 0; (e = cpg_join(h, &group)) == CS_ERR_TRY_AGAIN && tries < 50; tries++)
        g_usleep(20000);
    if (e != CS_OK) {
        Disconnect();
        return Status::OwnerLost(std::string("corosync: cannot join CPG group ") + kGroup + ": " +
                                 CsError(e));
    }
    int fd = -1;
    cpg_fd_get(h, &fd);
    cpg_watch_ = WatchFd(fd, G_IO_IN, &Membership::OnCpgReady, this);

    quorum_callbacks_t qcb = {};
    qcb.quorum_notify_fn = OnQuorumNotify;
    quorum_handle_t qh = 0;
    uint32_t type = 0;
    if ((e = quorum_initialize(&qh, &qcb, &type)) != CS_OK) {
        Disconnect();
        return Status::OwnerLost("corosync: cannot reach its quorum service: " + CsError(e));
    }
    quorum_ = qh;
    g_quorum_owner = this;
    int q = 0;
    quorum_getquorate(qh, &q);
    OnQuorum(q != 0);
    quorum_trackstart(qh, CS_TRACK_CHANGES);
    quorum_fd_get(qh, &fd);
    quorum_watch_ = WatchFd(fd, G_IO_IN, &Membership::OnQuorumReady, this);
    return Status::OK();
}

void Membership::Disconnect() {
    if (cpg_watch_)
        UnwatchFd(cpg_watch_);
    if (quorum_watch_)
        UnwatchFd(quorum_watch_);
    cpg_watch_ = quorum_watch_ = 0;
    if (cpg_)
        cpg_finalize(cpg_);
    if (quorum_)
        quorum_finalize(quorum_);
    cpg_ = quorum_ = 0;
    if (g_quorum_owner == this)
        g_quorum_owner = nullptr;
}

gboolean Membership::OnCpgReady(gint, GIOCondition cond, gpointer self) {
    loop_mutex.AssertHeld();
    auto *m = static_cast<Membership *>(self);
    cs_error_t e = cpg_dispatch(m->cpg_, CS_DISPATCH_ALL);
    if (e != CS_OK && e != CS_ERR_TRY_AGAIN) {
        m->cpg_watch_ = 0;  // removed by returning G_SOURCE_REMOVE
        m->OnCorosyncLost("CPG dispatch: " + CsError(e));
        return G_SOURCE_REMOVE;
    }
    if (cond & (G_IO_HUP | G_IO_ERR)) {
        m->cpg_watch_ = 0;
        m->OnCorosyncLost("its CPG connection closed");
        return G_SOURCE_REMOVE;
    }
    return G_SOURCE_CONTINUE;
}

gboolean Membership::OnQuorumReady(gint, GIOCondition cond, gpointer self) {
    loop_mutex.AssertHeld();
    auto *m = static_cast<Membership *>(self);
    cs_error_t e = quorum_dispatch(m->quorum_, CS_DISPATCH_ALL);
    if ((e != CS_OK && e != CS_ERR_TRY_AGAIN) || (cond & (G_IO_HUP | G_IO_ERR))) {
        m->quorum_watch_ = 0;
        m->OnCorosyncLost("its quorum connection closed");
        return G_SOURCE_REMOVE;
    }
    return G_SOURCE_CONTINUE;
}

void Membership::OnCorosyncLost(const std::string &why) {
    if (!cpg_ && !quorum_ && retry_timer_)
        return;  // already lost (the other handle's watch came second)
    g_warning(
        "membership: lost corosync (%s): this host is not quorate and every member is lost; "
        "reconnecting every %u ms",
        why.c_str(), kRetryMs);
    Disconnect();
    OnQuorum(false);
    // Every member is lost, in host id order.
    std::vector<Member> gone;
    for (const auto &[host, m] : by_host_)
        gone.push_back(m);
    hosts_.clear();
    by_host_.clear();
    group_.clear();
    self_announced_ = false;
    for (const auto &m : gone)
        Lose(m, "this host lost corosync");
    if (!retry_timer_) {
        retry_timer_ = g_timeout_add(
            kRetryMs,
            [](gpointer p) -> gboolean {
                loop_mutex.AssertHeld();
                auto *self = static_cast<Membership *>(p);
                if (self->Connect().ok()) {
                    g_message("membership: corosync reached again, joined CPG group %s", kGroup);
                    self->retry_timer_ = 0;
                    return G_SOURCE_REMOVE;
                }
                return G_SOURCE_CONTINUE;
            },
            this);
    }
}

bool Membership::Admits(uint32_t host, uint64_t incarnation) const {
    if (!corosync())
        return true;
    auto it = by_host_.find(host);
    return it != by_host_.end() && (incarnation == 0 || it->second.incarnation == incarnation);
}

std::string Membership::Describe() const {
    if (!corosync())
        return "static ([peer] groups)";
    std::string s = std::string("corosync, ") + (!cpg_ ? "NOT CONNECTED to corosync, " : "") +
                    (Quorate() ? "quorate" : "NOT QUORATE: locks refused") + ", members";
    std::vector<uint32_t> ids{d_.host_id()};
    for (const auto &[h, m] : by_host_)
        ids.push_back(h);
    std::sort(ids.begin(), ids.end());
    for (uint32_t h : ids)
        s += " " + std::to_string(h);
    if (id_taken_)
        s += " (this host's id is announced by another member)";
    return s;
}

void Membership::Announce() {
    if (!cpg_)
        return;
    MemberAnnounce a = {};
    a.magic = kAnnounceMagic;
    a.version = 1;
    a.type = 1;
    a.host_id = d_.host_id();
    a.incarnation = d_.incarnation();
    SetName(a.name, d_.cfg().host_name.substr(0, sizeof a.name - 1));
    SetName(a.address, d_.cfg().listen.substr(0, sizeof a.address - 1));
    struct iovec iov = {&a, sizeof a};
    cs_error_t e;
    for (int tries = 0;
         (e = cpg_mcast_joined(cpg_, CPG_TYPE_AGREED, &iov, 1)) == CS_ERR_TRY_AGAIN && tries < 50;
         tries++)
        g_usleep(2000);
    if (e != CS_OK)
        g_warning("membership: cannot announce this host in the group: %s", CsError(e).c_str());
}

void Membership::OnConfChange(const std::vector<CpgMember> &members,
                              const std::vector<CpgMember> &left,
                              const std::vector<CpgMember> &joined) {
    group_ = members;
    // The ones that left, in the order of the list (the same on every host).
    for (const CpgMember &l : left) {
        auto it = hosts_.find(l);
        if (it == hosts_.end())
            continue;  // never announced itself (or lost its host id to another)
        auto bh = by_host_.find(it->second);
        hosts_.erase(it);
        if (bh == by_host_.end() || !(bh->second.cpg == l))
            continue;
        Member m = std::move(bh->second);
        by_host_.erase(bh);
        g_warning("membership: host %u (%s) lost: %s (node %u pid %u)", m.host_id, m.name.c_str(),
                  ReasonName(l.reason), l.nodeid, l.pid);
        Lose(m, ReasonName(l.reason));
    }
    // Someone new (this process included): every member announces itself
    // again, so that the newcomer learns them all.
    if (!joined.empty())
        Announce();
}

void Membership::Lose(const Member &m, const std::string &why) {
    d_.peers().Lose(m.host_id, "host " + std::to_string(m.host_id) + " left the group: " + why);
}

void Membership::OnMessage(CpgMember from, const void *msg, size_t len) {
    if (from == self_) {
        self_announced_ = true;  // our announcement's place in the agreed order
        return;
    }
    MemberAnnounce a;
    std::string name, address, host;
    uint16_t port;
    if (len != sizeof a) {
        g_warning("membership: a group message of %zu bytes from node %u pid %u: ignored", len,
                  from.nodeid, from.pid);
        return;
    }
    memcpy(&a, msg, sizeof a);
    if (a.magic != kAnnounceMagic || a.version != 1 || a.type != 1 || a.host_id >= DSHM_MAX_HOSTS ||
        !FieldString(a.name, sizeof a.name, &name) ||
        !FieldString(a.address, sizeof a.address, &address) ||
        !SplitHostPort(address, &host, &port)) {
        g_warning("membership: a malformed announcement from node %u pid %u: ignored", from.nodeid,
                  from.pid);
        return;
    }
    if (std::find(group_.begin(), group_.end(), from) == group_.end())
        return;  // it left already (a later change said so)
    auto known = hosts_.find(from);
    if (known != hosts_.end())
        return;  // an announcement again, for a newcomer
    if (a.host_id == d_.host_id()) {
        // The first of the two in the agreed order keeps the id; both see
        // the same order.
        if (!self_announced_)
            id_taken_ = true;
        g_critical(
            "membership: node %u pid %u (%s at %s) announces this host's id %u: two dshmd with one "
            "host id; %s",
            from.nodeid, from.pid, name.c_str(), address.c_str(), a.host_id,
            id_taken_ ? "it came first: THIS dshmd is not quorate and grants no lock"
                      : "it is not admitted");
        hosts_[from] = DSHM_MAX_HOSTS;  // known, never admitted
        return;
    }
    if (auto bh = by_host_.find(a.host_id); bh != by_host_.end()) {
        g_critical(
            "membership: node %u pid %u (%s at %s) announces host id %u, which node %u pid %u "
            "has: not admitted",
            from.nodeid, from.pid, name.c_str(), address.c_str(), a.host_id, bh->second.cpg.nodeid,
            bh->second.cpg.pid);
        hosts_[from] = DSHM_MAX_HOSTS;
        return;
    }
    hosts_[from] = a.host_id;
    Member m{from, a.host_id, a.incarnation, name, address};
    by_host_[a.host_id] = m;
    g_message("membership: host %u (%s) is a member: node %u pid %u, data path %s", a.host_id,
              name.c_str(), from.nodeid, from.pid, address.c_str());
    d_.peers().AddMember(a.host_id, name, address);
}

void Membership::OnQuorum(bool quorate) {
    if (quorate == quorate_)
        return;
    quorate_ = quorate;
    refused_ = 0;
    if (quorate) {
        g_message("membership: quorate: this host grants locks");
        NotifyStatus("quorate");
    } else {
        g_warning(
            "membership: NOT QUORATE: this host's partition has no quorum: it grants no lock "
            "(E_NO_QUORUM) until quorum is back");
        NotifyStatus("not quorate: locks refused");
    }
}

}  // namespace dshm
