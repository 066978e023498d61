#include "liveness.h"

#include <algorithm>
#include <set>
#include <string>

#include "clients.h"
#include "daemon.h"
#include "peers.h"
#include "trace.h"

namespace dshm {

Liveness::~Liveness() {
    if (timer_)
        g_source_remove(timer_);
}

void Liveness::StartTimer() {
    if (!timer_)
        timer_ = g_timeout_add(std::max<uint32_t>(25, d_.cfg().peer_timeout_ms / 4),
                               &Liveness::OnTimer, this);
}

gboolean Liveness::OnTimer(gpointer self) {
    loop_mutex.AssertHeld();
    static_cast<Liveness *>(self)->Check();
    return G_SOURCE_CONTINUE;
}

uint64_t Liveness::fetch_deadline_ms() const {
    return 2 * uint64_t(d_.cfg().peer_timeout_ms);
}

uint64_t Liveness::release_deadline_ms() const {
    return uint64_t(d_.cfg().ack_timeout_ms) + d_.cfg().peer_timeout_ms;
}

bool Liveness::StampNow(uint32_t host, Stamp *out) {
    Peer *p = d_.peers().Find(host);
    if (!p || !p->Live())
        return false;  // queued: stamped when sent again at the next HELLO
    *out = Stamp{NowNs(), host, p->connections};
    return true;
}

bool Liveness::Current(const Stamp &st) {
    Peer *p = d_.peers().Find(st.host);
    return p && p->Live() && p->connections == st.connection;
}

void Liveness::FetchSent(const Segment *s, uint32_t pg) {
    Stamp st;
    if (StampNow(s->owner, &st))
        fetches_[{s, pg}] = st;
    else
        fetches_.erase({s, pg});
}

void Liveness::ReleaseSent(const LocalClient *c, uint32_t lock) {
    Stamp st;
    if (StampNow(c->seg->owner, &st))
        releases_[{c->id, lock}] = st;
    else
        releases_.erase({c->id, lock});
}

void Liveness::Check() {
    const uint64_t now = NowNs();
    std::map<uint32_t, std::string> lost;  // host -> why
    const uint64_t fetch_ns = fetch_deadline_ms() * 1000000;
    for (auto it = fetches_.begin(); it != fetches_.end();) {
        const Segment *s = it->first.first;
        const uint32_t pg = it->first.second;
        const Stamp &st = it->second;
        if (d_.IsOwner(s) || s->owner != st.host || s->pages->state(pg) != PageTable::kFetching ||
            !Current(st)) {
            it = fetches_.erase(it);
            continue;
        }
        // During a move the fetch is answered by the old owner or sent
        // again to the new one at its end (which stamps it anew).
        if (s->move) {
            ++it;
            continue;
        }
        if (now - st.ns > fetch_ns && !lost.count(st.host)) {
            lost[st.host] = "no PAGE for the FETCH of page " + std::to_string(pg) + " of " +
                            s->cfg.name + " within " + std::to_string(fetch_deadline_ms()) + " ms";
        }
        ++it;
    }
    const uint64_t release_ns = release_deadline_ms() * 1000000;
    for (auto it = releases_.begin(); it != releases_.end();) {
        const auto [client, lock] = it->first;
        const Stamp &st = it->second;
        const LocalClient *c = d_.clients().Find(client);
        bool waiting = false;
        if (c && c->seg && c->seg->owner == st.host && !d_.IsOwner(c->seg)) {
            if (lock == kFlush) {
                waiting = c->mig.flushing;
            } else {
                auto p = c->pending.find(lock);
                waiting = p != c->pending.end() && p->second.release;
            }
        }
        if (!waiting || !Current(st)) {
            it = releases_.erase(it);
            continue;
        }
        if (c->seg->move) {  // (a release at the old owner completes before its snapshot)
            ++it;
            continue;
        }
        if (now - st.ns > release_ns && !lost.count(st.host)) {
            lost[st.host] =
                std::string("no ") + (lock == kFlush ? "P_FLUSH_ACK" : "P_RELEASE_ACK") +
                " for client " + std::to_string(client) + "'s " +
                (lock == kFlush ? "flush" : "release of lock " + std::to_string(lock)) + " of " +
                c->seg->cfg.name + " within " + std::to_string(release_deadline_ms()) + " ms";
        }
        ++it;
    }
    FailStrandedFaults(now);
    for (const auto &[host, why] : lost) {
        Peer *p = d_.peers().Find(host);
        if (!p || !p->Live())
            continue;
        g_warning("peer %s (host %u) does not answer: %s: disconnecting it", p->cfg.name.c_str(),
                  host, why.c_str());
        // The close path declares it lost (Peers::OnClosed), as a TCP close.
        p->conn->Fail(Status::OwnerLost(why), 0);
    }
}

void Liveness::FailStrandedFaults(uint64_t now) {
    for (const auto &[id, p] : d_.peers().all()) {
        if (p->Live())
            down_since_.erase(id);
        else
            down_since_.emplace(id, now);
    }
    const uint64_t bound_ns = uint64_t(d_.cfg().peer_timeout_ms) * 1000000;
    std::set<uint32_t> stranded;
    for (const auto &[name, sp] : d_.segments()) {
        const Segment *s = sp.get();
        if (d_.IsOwner(s) || s->move || s->pages->fetching() == 0)
            continue;
        auto down = down_since_.find(s->owner);
        if (down == down_since_.end() || now - down->second < bound_ns)
            continue;
        for (uint32_t pg : s->pages->Fetching()) {
            for (const PageTable::Waiter &w : s->pages->WaitersOf(pg))
                stranded.insert(w.client);
        }
    }
    for (uint32_t id : stranded) {
        LocalClient *c = d_.clients().Find(id);
        if (!c || !c->conn || c->conn->closed())
            continue;
        const std::string why = "a fault of this client waits for owner host " +
                                std::to_string(c->seg->owner) + ", unreachable for " +
                                std::to_string(d_.cfg().peer_timeout_ms) + " ms";
        g_warning("%s: %s: failing the client", c->conn->label().c_str(), why.c_str());
        c->conn->Fail(Status::OwnerLost(why), 0);
    }
}

}  // namespace dshm
