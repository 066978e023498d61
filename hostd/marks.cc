#include "marks.h"

#include "daemon.h"
#include "mover.h"
#include "msgs.h"
#include "peers.h"

namespace dshm {

void Marks::AfterRevoked(Segment *s, uint32_t pg, std::function<void()> then) {
    const int holder = s->pages->excl(pg);
    auto [it, first] = s->home->excl_waiting.try_emplace(pg);
    it->second.push_back(std::move(then));
    if (first) {
        const uint32_t one[1] = {pg};
        d_.peers().Send(static_cast<uint32_t>(holder),
                        PageListMsg(DSHM_MSG_EXCL_REVOKE, 0, s->cfg.name, one));
        s->stats.excl_revoked++;
    }
}

void Marks::RunWaiting(Segment *s, const std::vector<uint32_t> &pages) {
    auto &waiting = s->home->excl_waiting;
    for (uint32_t pg : pages) {
        auto it = waiting.find(pg);
        if (it == waiting.end())
            continue;
        std::vector<std::function<void()>> work = std::move(it->second);
        waiting.erase(it);
        for (auto &fn : work)
            fn();
    }
    d_.mover().MaybeSendSnapshot(s);  // a move waits for revokes under way
}

void Marks::OnHostGone(Segment *s, uint32_t host) {
    RunWaiting(s, s->pages->DropExcl(static_cast<int>(host)));
}

void Marks::GrantAfterRelease(Segment *s, uint32_t host, const std::vector<uint32_t> &whole) {
    const uint32_t me = d_.host_id();
    if (!d_.cfg().exclusive_pages || s->move || host == me || whole.empty())
        return;
    std::vector<uint32_t> grant;
    for (uint32_t pg : whole) {
        if (s->pages->excl(pg) < 0 && !s->home->excl_waiting.contains(pg) &&
            s->pages->OtherHolders(pg, me, host) == 0 && s->pages->dirtiers(pg) == 0) {
            s->pages->SetExcl(pg, static_cast<int>(host));
            grant.push_back(pg);
        }
    }
    for (auto &msg :
         ListMsgs<uint32_t>(DSHM_MSG_EXCL_GRANT, 0, s->cfg.name, grant, DSHM_MAX_INVAL_PAGES))
        d_.peers().Send(host, std::move(msg));
    s->stats.excl_granted += grant.size();
}

void Marks::OnFromOwner(Peer *peer, const Frame &f) {
    auto m = f.Fixed<dshm_pagelist>();
    Segment *s = d_.PeerSegment(peer, f, NameOf(m.segment), false);
    if (!s)
        return;
    if (s->owner != peer->cfg.host_id || d_.IsOwner(s)) {
        return peer->conn->Fail(Status::NotOwner(MsgTypeName(f.hdr.type) + " from a non-owner"),
                                f.hdr.type);
    }
    std::vector<uint32_t> pages;
    if (Status st = PagesOf(f, s->npages, &pages); !st.ok())
        return peer->conn->Fail(st, f.hdr.type);
    if (f.hdr.type == DSHM_MSG_EXCL_REVOKE) {
        for (uint32_t pg : pages)
            s->pages->SetExcl(pg, -1);
        // After every write-back this host sent before: same connection, FIFO.
        peer->conn->Send(PageListMsg(DSHM_MSG_EXCL_REVOKED, f.hdr.tag, s->cfg.name, pages));
        return;
    }
    if (s->move)
        return;  // (no grant is sent during a move)
    // Only for pages this host holds: a grant that crossed this host's
    // DROP_COPY on the wire finds them gone, and is ignored (a page fetched
    // again since is answered after the grant: same connection).
    for (uint32_t pg : pages) {
        if (s->pages->state(pg) == PageTable::kValid)
            s->pages->SetExcl(pg, static_cast<int>(d_.host_id()));
    }
}

void Marks::OnRevoked(Peer *peer, const Frame &f) {
    auto m = f.Fixed<dshm_pagelist>();
    Segment *s = d_.PeerSegment(peer, f, NameOf(m.segment), true);
    if (!s)
        return;
    std::vector<uint32_t> pages;
    if (Status st = PagesOf(f, s->npages, &pages); !st.ok())
        return peer->conn->Fail(st, f.hdr.type);
    std::vector<uint32_t> dropped;
    for (uint32_t pg : pages) {
        if (s->pages->excl(pg) == static_cast<int>(peer->cfg.host_id)) {
            s->pages->SetExcl(pg, -1);
            dropped.push_back(pg);
        }
    }
    RunWaiting(s, dropped);
}

}  // namespace dshm
