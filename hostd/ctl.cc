#include "ctl.h"

#include <json-glib/json-glib.h>

#include "agent.h"
#include "clients.h"
#include "daemon.h"
#include "membership.h"
#include "peers.h"
#include "trace.h"

namespace dshm {
namespace {

// Entries per list in the first attempt; halved until the reply fits.
constexpr size_t kFirstListCap = 4096;

// The reply with at most `cap` entries in each list (VMs, cluster,
// advice, clients, peers); *cut is set when a list was cut.
std::string BuildJson(const Daemon &d, uint32_t what, size_t cap, bool *cut) REQUIRES(loop_mutex) {
    const Config &cfg = d.cfg();
    // False (and *cut set) once `n` entries of a list were added.
    auto room = [cap, cut](size_t n) {
        if (n < cap)
            return true;
        *cut = true;
        return false;
    };
    JsonBuilder *b = json_builder_new();
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "host_id");
    json_builder_add_int_value(b, cfg.host_id);
    json_builder_set_member_name(b, "host_name");
    json_builder_add_string_value(b, cfg.host_name.c_str());
    {
        // Who is alive and whether this host may grant locks (membership.h).
        const Membership &m = d.membership();
        json_builder_set_member_name(b, "membership");
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "mode");
        json_builder_add_string_value(b, MembershipModeName(cfg.membership));
        json_builder_set_member_name(b, "quorate");
        json_builder_add_boolean_value(b, m.Quorate());
        json_builder_set_member_name(b, "corosync_connected");
        json_builder_add_boolean_value(b, m.connected());
        json_builder_set_member_name(b, "locks_refused");
        json_builder_add_int_value(b, m.refused_total());
        json_builder_set_member_name(b, "summary");
        json_builder_add_string_value(b, m.Describe().c_str());
        json_builder_set_member_name(b, "members");
        json_builder_begin_array(b);
        for (const auto &[host, mem] : m.members()) {
            json_builder_begin_object(b);
            json_builder_set_member_name(b, "host_id");
            json_builder_add_int_value(b, host);
            json_builder_set_member_name(b, "name");
            json_builder_add_string_value(b, mem.name.c_str());
            json_builder_set_member_name(b, "address");
            json_builder_add_string_value(b, mem.address.c_str());
            json_builder_set_member_name(b, "nodeid");
            json_builder_add_int_value(b, mem.cpg.nodeid);
            json_builder_set_member_name(b, "pid");
            json_builder_add_int_value(b, mem.cpg.pid);
            json_builder_end_object(b);
        }
        json_builder_end_array(b);
        json_builder_end_object(b);
    }
    if (what == DSHM_CTL_SEGMENTS || what == DSHM_CTL_STATS) {
        json_builder_set_member_name(b, "segments");
        json_builder_begin_array(b);
        for (const auto &[name, s] : d.segments()) {
            // Kept by the page table as states change: no walk of the
            // pages (a 64 GiB segment has 16 M of them).
            uint64_t valid = 0;
            const uint64_t dirty = s->pages->twinned_pages();
            const uint64_t copies = s->pages->copies();
            if (s->memfd.valid() && !d.IsOwner(s.get()))
                valid = s->pages->valid_pages();
            if (d.IsOwner(s.get()) && s->memfd.valid()) {
                // Present pages of the owner's memfd (one lseek pair per run).
                auto r = os::CountPresentPages(s->memfd.get(), s->npages);
                if (r.ok())
                    valid = *r;
            }
            json_builder_begin_object(b);
            json_builder_set_member_name(b, "name");
            json_builder_add_string_value(b, name.c_str());
            json_builder_set_member_name(b, "size");
            json_builder_add_int_value(b, s->cfg.size);
            json_builder_set_member_name(b, "owner");
            json_builder_add_int_value(b, s->owner);
            json_builder_set_member_name(b, "local_copy");
            json_builder_add_boolean_value(b, s->memfd.valid());
            json_builder_set_member_name(b, "valid_pages");
            json_builder_add_int_value(b, valid);
            json_builder_set_member_name(b, "dirty_pages");
            json_builder_add_int_value(b, dirty);
            json_builder_set_member_name(b, "remote_copies");
            json_builder_add_int_value(b, copies);
            auto add = [b](const char *k, uint64_t v) {
                json_builder_set_member_name(b, k);
                json_builder_add_int_value(b, v);
            };
            auto str = [b](const char *k, const std::string &v) {
                json_builder_set_member_name(b, k);
                json_builder_add_string_value(b, v.c_str());
            };
            str("owner_reason", s->owner_reason);
            json_builder_set_member_name(b, "moving");
            json_builder_add_boolean_value(b, s->move != nullptr);
            // The owner's lock table: held locks and the clients waiting.
            if (s->home) {
                uint64_t held = 0, waiting = 0;
                for (const auto &[lock, holder, waiters] : s->home->locks.Snapshot()) {
                    (void)lock, (void)holder;
                    held++;
                    waiting += waiters;
                }
                add("locks_held", held);
                add("lock_waiters", waiting);
            }
            auto activity = [b, &add](const char *k, const Activity &a) {
                json_builder_set_member_name(b, k);
                json_builder_begin_object(b);
                add("read_faults", a.read_faults);
                add("write_faults", a.write_faults);
                add("pages_written_back", a.pages_written_back);
                add("bytes_written_back", a.bytes_written_back);
                add("acquires", a.acquires);
                add("hold_ms", a.hold_ns / 1000000);
                add("events", a.events());
                json_builder_end_object(b);
            };
            // The access monitor: this host's VMs (window and totals) ...
            json_builder_set_member_name(b, "monitor");
            json_builder_begin_object(b);
            add("window_s", cfg.policy.window_s);
            json_builder_set_member_name(b, "vms");
            json_builder_begin_array(b);
            size_t n = 0;
            for (const VmActivity &v : d.agent().monitor().Snapshot(name, NowNs())) {
                if (!room(n++))
                    break;
                json_builder_begin_object(b);
                str("name", v.vm.name);
                str("uuid", v.vm.has_uuid() ? v.vm.UuidString() : "");
                json_builder_set_member_name(b, "attached");
                json_builder_add_boolean_value(b, v.attached);
                activity("window", v.window);
                activity("total", v.total);
                json_builder_end_object(b);
            }
            json_builder_end_array(b);
            json_builder_end_object(b);
            // ... and the classification of every host's VMs (the owner's view).
            std::vector<MergedVm> merged = d.agent().MergedView(s.get());
            json_builder_set_member_name(b, "cluster");
            json_builder_begin_array(b);
            n = 0;
            for (const Classification &cl : Classify(merged, cfg.policy)) {
                if (!room(n++))
                    break;
                json_builder_begin_object(b);
                str("name", cl.vm.name);
                str("uuid", cl.vm.has_uuid() ? cl.vm.UuidString() : "");
                for (const MergedVm &mv : merged) {
                    if (mv.vm.Key() == cl.vm.Key()) {
                        auto at = mv.At();
                        json_builder_set_member_name(b, "host");
                        json_builder_add_int_value(b, at ? int64_t(*at) : -1);
                        activity("window", mv.window);
                    }
                }
                add("events", cl.events);
                json_builder_set_member_name(b, "share");
                json_builder_add_double_value(b, cl.share);
                str("link", cl.gone ? "gone" : cl.strong ? "strong" : "weak");
                json_builder_set_member_name(b, "most_active");
                json_builder_add_boolean_value(b, cl.most_active);
                str("reason", cl.reason);
                json_builder_end_object(b);
            }
            json_builder_end_array(b);
            json_builder_set_member_name(b, "advice");
            json_builder_begin_array(b);
            n = 0;
            for (const Advice &a : Advise(name, merged, s->owner, cfg.policy)) {
                if (!room(n++))
                    break;
                json_builder_begin_object(b);
                str("vm", a.vm.ToString());
                str("name", a.vm.name);
                str("kind", a.kind == Advice::Kind::kMoveVm ? "move-vm" : "move-ownership");
                add("from_host", a.from_host);
                add("to_host", a.to_host);
                add("score", a.score);
                str("reason", a.reason);
                json_builder_end_object(b);
            }
            json_builder_end_array(b);
            json_builder_set_member_name(b, "stats");
            json_builder_begin_object(b);
            const SegmentStats &st = s->stats;
            add("missing_faults", st.missing_faults);
            add("wp_faults", st.wp_faults);
            add("write_ahead", st.write_ahead);
            add("fetches_sent", st.fetches_sent);
            add("fetches_served", st.fetches_served);
            add("pages_written_back", st.pages_written_back);
            add("bytes_written_back", st.bytes_written_back);
            add("writebacks_applied", st.writebacks_applied);
            size_t inflight = 0;
            if (s->home) {
                for (const auto &[host, frames] : s->home->buffered)
                    inflight += frames.size();
            }
            add("writebacks_inflight", inflight);
            add("writebacks_reverted", st.writebacks_reverted);
            add("invalidations_sent", st.invalidations_sent);
            add("invalidations_received", st.invalidations_received);
            add("updates", st.updates);
            add("acquires", st.acquires);
            add("releases", st.releases);
            add("excl_granted", st.excl_granted);
            add("excl_revoked", st.excl_revoked);
            add("excl_marked", s->pages->marked_pages());
            add("whole_unchecked", st.whole_unchecked);
            add("read_ahead", st.read_ahead);
            add("read_ahead_used", st.read_ahead_used);
            add("read_ahead_unused", st.read_ahead_unused);
            json_builder_end_object(b);
            json_builder_set_member_name(b, "clients");
            json_builder_begin_array(b);
            n = 0;
            for (uint32_t cid : s->clients) {
                const LocalClient *c = d.clients().Find(cid);
                if (!c)
                    continue;
                if (!room(n++))
                    break;
                json_builder_begin_object(b);
                json_builder_set_member_name(b, "id");
                json_builder_add_int_value(b, c->id);
                json_builder_set_member_name(b, "name");
                json_builder_add_string_value(b, c->name.c_str());
                add("locks_held", c->held.size());
                add("pid", c->cred.pid);
                add("uid", c->cred.uid);
                add("missing_faults", c->stats.missing_faults);
                add("wp_faults", c->stats.wp_faults);
                add("write_ahead", c->stats.write_ahead);
                add("read_ahead", c->stats.read_ahead);
                add("pages_written_back", c->stats.pages_written_back);
                add("bytes_written_back", c->stats.bytes_written_back);
                add("acquires", c->stats.acquires);
                add("releases", c->stats.releases);
                json_builder_end_object(b);
            }
            json_builder_end_array(b);
            json_builder_end_object(b);
        }
        json_builder_end_array(b);
    }
    if (what == DSHM_CTL_PEERS || what == DSHM_CTL_STATS) {
        json_builder_set_member_name(b, "peers");
        json_builder_begin_array(b);
        size_t n = 0;
        for (const auto &[id, p] : d.peers().all()) {
            if (!room(n++))
                break;
            json_builder_begin_object(b);
            json_builder_set_member_name(b, "host_id");
            json_builder_add_int_value(b, id);
            json_builder_set_member_name(b, "name");
            json_builder_add_string_value(b, p->cfg.name.c_str());
            json_builder_set_member_name(b, "address");
            json_builder_add_string_value(b, p->cfg.address.c_str());
            json_builder_set_member_name(b, "connected");
            json_builder_add_boolean_value(b, p->up);
            json_builder_set_member_name(b, "bytes_in");
            json_builder_add_int_value(b, p->conn ? p->conn->bytes_in() : 0);
            json_builder_set_member_name(b, "bytes_out");
            json_builder_add_int_value(b, p->conn ? p->conn->bytes_out() : 0);
            json_builder_end_object(b);
        }
        json_builder_end_array(b);
    }
    if (*cut) {
        json_builder_set_member_name(b, "truncated");
        json_builder_add_boolean_value(b, TRUE);
    }
    json_builder_end_object(b);
    JsonGenerator *g = json_generator_new();
    JsonNode *root = json_builder_get_root(b);
    json_generator_set_root(g, root);
    gchar *text = json_generator_to_data(g, nullptr);
    std::string out(text);
    g_free(text);
    json_node_unref(root);
    g_object_unref(g);
    g_object_unref(b);
    return out;
}

}  // namespace

std::string CtlJson(const Daemon &d, uint32_t what) {
    for (size_t cap = kFirstListCap;; cap /= 2) {
        bool cut = false;
        std::string json = BuildJson(d, what, cap, &cut);
        if (json.size() <= kMaxCtlReply || cap == 0)
            return json;
    }
}

}  // namespace dshm
