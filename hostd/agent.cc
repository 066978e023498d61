#include "agent.h"

#include <algorithm>
#include <cstring>

#include "clients.h"
#include "daemon.h"
#include "mover.h"
#include "peers.h"
#include "trace.h"

namespace dshm {
namespace {

dshm_vm_activity ToWire(const VmId &vm, uint32_t host, bool attached, const Activity &a) {
    dshm_vm_activity w = {};
    SetName(w.vm_name, vm.name.substr(0, DSHM_VMNAME_LEN - 1));
    std::copy(vm.uuid.begin(), vm.uuid.end(), w.vm_uuid);
    w.host_id = host;
    w.attached = attached ? 1 : 0;
    w.read_faults = a.read_faults;
    w.write_faults = a.write_faults;
    w.pages_written_back = a.pages_written_back;
    w.bytes_written_back = a.bytes_written_back;
    w.acquires = a.acquires;
    w.hold_ns = a.hold_ns;
    return w;
}

Activity FromWire(const dshm_vm_activity &w) {
    return Activity{w.read_faults,        w.write_faults, w.pages_written_back,
                    w.bytes_written_back, w.acquires,     w.hold_ns};
}

// Entry i of a validated P_STATS payload.
dshm_vm_activity EntryAt(std::span<const uint8_t> extra, uint32_t i, VmId *vm) {
    dshm_vm_activity w;
    memcpy(&w, extra.data() + i * sizeof w, sizeof w);
    vm->name = std::string(NameOf(w.vm_name));
    std::copy(std::begin(w.vm_uuid), std::end(w.vm_uuid), vm->uuid.begin());
    return w;
}

// A P_STATS message of `wire` (at most DSHM_MAX_STATS_VMS entries).
std::vector<uint8_t> StatsMsg(const std::string &segment, const std::vector<dshm_vm_activity> &wire,
                              uint32_t flags) {
    dshm_stats m = {};
    SetName(m.segment, segment);
    m.count = static_cast<uint32_t>(wire.size());
    m.flags = flags;
    return EncodeMsg(DSHM_MSG_P_STATS, 0, m, wire.data(), wire.size() * sizeof(dshm_vm_activity));
}

}  // namespace

Agent::Agent(Daemon &d) : d_(d), monitor_(d.cfg().policy.window_s) {}

Agent::~Agent() {
    if (report_timer_)
        g_source_remove(report_timer_);
    if (log_timer_)
        g_source_remove(log_timer_);
}

void Agent::StartTimers() {
    const PolicyConfig &policy = d_.cfg().policy;
    report_timer_ = g_timeout_add(policy.report_ms, &Agent::OnReportTimer, this);
    if (policy.log_s)
        log_timer_ = g_timeout_add_seconds(policy.log_s, &Agent::OnLogTimer, this);
}

void Agent::Record(LocalClient *c, const Activity &delta) {
    if (c->seg)
        monitor_.Record(c->seg->cfg.name, c->vm(), delta, NowNs());
}

void Agent::RecordGrant(LocalClient *c, uint32_t lock) {
    c->held_since[lock] = NowNs();
    Record(c, Activity{.acquires = 1});
}

void Agent::RecordRelease(LocalClient *c, uint32_t lock) {
    auto it = c->held_since.find(lock);
    if (it == c->held_since.end())
        return;
    Record(c, Activity{.hold_ns = NowNs() - it->second});
    c->held_since.erase(it);
}

void Agent::SetAttached(LocalClient *c) {
    monitor_.SetAttached(c->seg->cfg.name, c->vm(), true);
}

void Agent::UpdateAttached(Segment *s, const VmId &vm) {
    bool attached = false;
    for (uint32_t cid : s->clients) {
        const LocalClient *o = d_.clients().Find(cid);
        if (o && o->ready && o->vm().Key() == vm.Key())
            attached = true;
    }
    monitor_.SetAttached(s->cfg.name, vm, attached);
}

void Agent::ForgetSegment(const std::string &segment) {
    cluster_.ForgetSegment(segment);
}

gboolean Agent::OnReportTimer(gpointer self) {
    loop_mutex.AssertHeld();
    auto *a = static_cast<Agent *>(self);
    Daemon &d = a->d_;
    const uint64_t now = NowNs();
    a->report_rounds_++;
    a->monitor_.Prune(now);
    a->cluster_.Expire(
        now, std::max<uint64_t>(10'000'000'000ull, 5ull * d.cfg().policy.report_ms * 1'000'000));
    for (const auto &[name, s] : d.segments()) {
        std::vector<VmReport> report = MakeReport(a->monitor_.Snapshot(name, now));
        if (d.IsOwner(s.get())) {
            a->cluster_.Report(name, d.host_id(), std::move(report), now);
            continue;
        }
        if (s->move)
            continue;
        // Not queued for an owner that is not up: reports are periodic, the
        // next round after the connection is back goes out (a queued one
        // per segment and round would grow without bound meanwhile).
        Peer *op = d.peers().Find(s->owner);
        Conn *oc = op ? op->Live() : nullptr;
        if (!oc)
            continue;
        if (report.size() > DSHM_MAX_STATS_VMS)
            report.resize(DSHM_MAX_STATS_VMS);
        std::vector<dshm_vm_activity> wire;
        for (const auto &r : report)
            wire.push_back(ToWire(r.vm, d.host_id(), r.attached, r.window));
        oc->Send(StatsMsg(name, wire, 0));
    }
    return G_SOURCE_CONTINUE;
}

gboolean Agent::OnLogTimer(gpointer self) {
    loop_mutex.AssertHeld();
    auto *a = static_cast<Agent *>(self);
    const uint32_t window_s = a->d_.cfg().policy.window_s;
    const uint64_t now = NowNs();
    for (const std::string &seg : a->monitor_.Segments()) {
        for (const VmActivity &v : a->monitor_.Snapshot(seg, now)) {
            const std::string vm = v.vm.ToString();
            const std::string window = v.window.ToString();
            g_log_structured(G_LOG_DOMAIN, G_LOG_LEVEL_MESSAGE, "DSHM_SEGMENT", seg.c_str(),
                             "DSHM_VM", vm.c_str(), "DSHM_WINDOW_S",
                             std::to_string(window_s).c_str(), "MESSAGE",
                             "monitor: segment %s VM %s%s: last %us: %s", seg.c_str(), vm.c_str(),
                             v.attached ? "" : " (detached)", window_s, window.c_str());
        }
    }
    return G_SOURCE_CONTINUE;
}

void Agent::OnPStats(Peer *peer, const Frame &f) {
    auto m = f.Fixed<dshm_stats>();
    Segment *s = d_.PeerSegment(peer, f, NameOf(m.segment), false);
    if (!s)
        return;
    auto extra = f.Extra(sizeof m);
    if (m.flags & DSHM_STATS_MERGED) {
        if (s->owner != peer->cfg.host_id)
            return;  // a stale answer of a former owner
        std::map<std::string, MergedVm> by_key;
        for (uint32_t i = 0; i < m.count; i++) {
            VmId vm;
            dshm_vm_activity w = EntryAt(extra, i, &vm);
            MergedVm &mv = by_key[vm.Key()];
            mv.vm = vm;
            mv.window += FromWire(w);
            mv.hosts.push_back(HostActivity{w.host_id, w.attached != 0, FromWire(w)});
        }
        std::vector<MergedVm> &merged = merged_[s->cfg.name];
        merged.clear();
        for (auto &[k, mv] : by_key)
            merged.push_back(std::move(mv));
        return;
    }
    if (!d_.IsOwner(s))
        return;  // reports race with a move: the next one goes to the new owner
    std::vector<VmReport> report;
    for (uint32_t i = 0; i < m.count; i++) {
        VmReport r;
        dshm_vm_activity w = EntryAt(extra, i, &r.vm);
        r.attached = w.attached != 0;
        r.window = FromWire(w);
        report.push_back(std::move(r));
    }
    cluster_.Report(s->cfg.name, peer->cfg.host_id, std::move(report), NowNs());
    // Answer with the merged view: every host then knows the classification.
    std::vector<dshm_vm_activity> wire;
    for (const MergedVm &mv : cluster_.Merged(s->cfg.name)) {
        for (const HostActivity &h : mv.hosts) {
            if (wire.size() < DSHM_MAX_STATS_VMS)
                wire.push_back(ToWire(mv.vm, h.host, h.attached, h.window));
        }
    }
    peer->conn->Send(StatsMsg(s->cfg.name, wire, DSHM_STATS_MERGED));
}

std::vector<MergedVm> Agent::MergedView(const Segment *s) const {
    if (!d_.IsOwner(s)) {
        auto it = merged_.find(s->cfg.name);
        return it == merged_.end() ? std::vector<MergedVm>{} : it->second;
    }
    // A copy: a query must not change what the policy sees.
    ClusterView view = cluster_;
    const uint64_t now = NowNs();
    view.Report(s->cfg.name, d_.host_id(), MakeReport(monitor_.Snapshot(s->cfg.name, now)), now);
    return view.Merged(s->cfg.name);
}

std::vector<MergedVm> Agent::RefreshMergedView(const Segment *s) {
    if (!d_.IsOwner(s))
        return MergedView(s);
    const uint64_t now = NowNs();
    cluster_.Report(s->cfg.name, d_.host_id(), MakeReport(monitor_.Snapshot(s->cfg.name, now)),
                    now);
    return cluster_.Merged(s->cfg.name);
}

void Agent::OnVmArrived(Segment *s, const VmId &vm, uint32_t from, uint32_t host) {
    if (s->move)
        return;
    const PolicyConfig &policy = d_.cfg().policy;
    std::vector<MergedVm> view = RefreshMergedView(s);
    MarkAttached(&view, vm, host);  // it is there now, whatever the last reports say
    std::vector<Classification> cls = Classify(view, policy);
    Decision dec = DecideOnMigration(s->cfg.name, vm, from, host, s->owner, cls, policy);
    g_log_structured(G_LOG_DOMAIN, G_LOG_LEVEL_MESSAGE, "DSHM_SEGMENT", s->cfg.name.c_str(),
                     "DSHM_VM", vm.ToString().c_str(), "DSHM_DECISION", dec.move ? "move" : "stay",
                     "MESSAGE", "policy: %s", dec.reason.c_str());
    if (dec.move)
        d_.mover().StartMove(s, host, dec.reason);
    else
        s->owner_reason = dec.reason;
}

}  // namespace dshm
