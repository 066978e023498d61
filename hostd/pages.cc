#include "pages.h"

#include <algorithm>
#include <cstring>

#include "diff.h"
#include "dshm/wire.h"

namespace dshm {
namespace {
constexpr size_t kPage = DSHM_PAGE_SIZE;
}

const PageTable::Page PageTable::kIdleOwner = {0, nullptr, 0, 0, kValid, -1, false};
const PageTable::Page PageTable::kIdleOther = {0, nullptr, 0, 0, kInvalid, -1, false};

PageTable::PageTable(uint32_t npages, bool owner)
    : npages_(npages),
      chunks_((uint64_t(npages) + kChunkPages - 1) >> kChunkShift),
      nvalid_(owner ? npages : 0),
      owner_(owner) {}

void PageTable::Allocate(std::unique_ptr<Page[]> *c) {
    *c = std::make_unique<Page[]>(kChunkPages);
    const State idle = owner_ ? kValid : kInvalid;
    for (uint32_t i = 0; i < kChunkPages; i++)
        (*c)[i].state = idle;
    nchunks_++;
}

void PageTable::SetState(Page *pg, State st) {
    if (pg->state == st)
        return;
    nvalid_ += (st == kValid) - (pg->state == kValid);
    nfetching_ += (st == kFetching) - (pg->state == kFetching);
    pg->state = st;
}

void PageTable::SetCopyset(Page *pg, uint64_t cs) {
    ncopies_ += __builtin_popcountll(cs);
    ncopies_ -= __builtin_popcountll(pg->copyset);
    pg->copyset = cs;
}

void PageTable::SetMark(Page *pg, int host) {
    nexcl_ += (host >= 0) - (pg->excl >= 0);
    pg->excl = static_cast<int8_t>(host);
}

void PageTable::SetAhead(Page *pg, bool ahead) {
    nahead_ += ahead - pg->ahead;
    pg->ahead = ahead;
}

void PageTable::TakeTwin(Page *pg) {
    if (spare_twins_.empty()) {
        pg->twin.reset(new uint8_t[kPage]);
    } else {
        pg->twin = std::move(spare_twins_.back());
        spare_twins_.pop_back();
    }
    ntwins_++;
}

void PageTable::DropTwin(Page *pg) {
    if (!pg->twin)
        return;
    ntwins_--;
    if (spare_twins_.size() < kMaxSpareTwins)
        spare_twins_.push_back(std::move(pg->twin));
    pg->twin.reset();
}

PageTable::MissingAction PageTable::OnMissingFault(uint32_t p, uint32_t client, uint64_t addr) {
    if (owner_)
        return MissingAction::kFillZero;
    switch (Get(p).state) {
        case kValid:
            return MissingAction::kWake;
        case kFetching:
            waiters_[p].push_back({client, addr});
            return MissingAction::kWait;
        case kInvalid:
            break;
    }
    SetState(&Mut(p), kFetching);
    waiters_[p].push_back({client, addr});
    return MissingAction::kFetch;
}

PageTable::WriteAction PageTable::OnWriteFault(uint32_t p, bool first, const uint8_t *content) {
    if (Get(p).state != kValid)
        return WriteAction::kRefault;
    if (first) {
        Page &pg = Mut(p);
        if (pg.ndirtiers++ == 0) {
            TakeTwin(&pg);
            memcpy(pg.twin.get(), content, kPage);
        }
    }
    return WriteAction::kUnprotect;
}

std::vector<PageTable::Waiter> PageTable::TakeWaiters(uint32_t p) {
    if (Get(p).state != kFetching)
        return {};
    auto it = waiters_.find(p);
    if (it == waiters_.end())
        return {};
    std::vector<Waiter> out = std::move(it->second);
    waiters_.erase(it);
    return out;
}

void PageTable::Installed(uint32_t p, bool ok) {
    Page &pg = Mut(p);
    SetState(&pg, ok ? kValid : kInvalid);
    if (!ok)
        SetAhead(&pg, false);
}

bool PageTable::StartAheadFetch(uint32_t p) {
    if (owner_ || Get(p).state != kInvalid)
        return false;
    Page &pg = Mut(p);
    SetState(&pg, kFetching);
    SetAhead(&pg, true);
    return true;
}

void PageTable::ForgetClient(uint32_t client) {
    for (auto it = waiters_.begin(); it != waiters_.end();) {
        std::erase_if(it->second, [client](const Waiter &w) { return w.client == client; });
        if (it->second.empty())
            it = waiters_.erase(it);
        else
            ++it;
    }
}

std::vector<uint32_t> PageTable::Fetching() const {
    std::vector<uint32_t> out;
    if (nfetching_ == 0)
        return out;
    ForEachAllocated([&out](uint32_t p, const Page &pg) {
        if (pg.state == kFetching)
            out.push_back(p);
    });
    return out;
}

std::vector<uint32_t> PageTable::CleanValid() const {
    std::vector<uint32_t> out;
    if (nvalid_ == 0)
        return out;
    if (owner_) {  // (every page: not expected of a caller)
        for (uint32_t p = 0; p < npages_; p++) {
            if (Get(p).ndirtiers == 0)
                out.push_back(p);
        }
        return out;
    }
    ForEachAllocated([&out](uint32_t p, const Page &pg) {
        if (pg.state == kValid && pg.ndirtiers == 0)
            out.push_back(p);
    });
    return out;
}

uint16_t PageTable::ReleaseDirty(uint32_t p, const uint8_t *content, std::vector<uint8_t> *out) {
    out->resize(kMaxEncodedDiff);
    size_t len = 0;
    const uint16_t enc = ReleaseDirty(p, content, out->data(), &len);
    out->resize(len);
    return enc;
}

uint16_t PageTable::ReleaseDirty(uint32_t p, const uint8_t *content, uint8_t *out, size_t *len) {
    return ReleaseDirty(p, content, out, len, nullptr);
}

uint16_t PageTable::ReleaseDirty(uint32_t p, const uint8_t *content, uint8_t *out, size_t *len,
                                 bool *whole, bool unchecked) {
    Page &pg = Mut(p);
    if (whole != nullptr) {
        *whole = pg.ndirtiers == 1 && (unchecked || AllBytesChanged(content, pg.twin.get()));
        if (*whole) {
            pg.ndirtiers = 0;
            DropTwin(&pg);
            *len = kPageSize;
            return DSHM_ENC_FULL;
        }
    }
    const uint16_t enc = EncodeDiffTo(content, pg.twin.get(), out, len);
    if (--pg.ndirtiers == 0) {
        DropTwin(&pg);
    } else if (enc) {
        // Valid by construction: EncodeDiffTo produced it.
        (void)ApplyDiff(pg.twin.get(), enc, out, *len);
    }
    return enc;
}

bool PageTable::DropDirtier(uint32_t p, uint8_t *content) {
    Page &pg = Mut(p);
    if (--pg.ndirtiers > 0)
        return false;
    memcpy(content, pg.twin.get(), kPage);
    DropTwin(&pg);
    return true;
}

PageTable::InvalAction PageTable::OnInvalidate(uint32_t p) {
    const Page &cur = Get(p);
    if (cur.state != kValid)
        return InvalAction::kNotHere;
    if (cur.ndirtiers > 0)
        return InvalAction::kKeep;
    SetState(&Mut(p), kInvalid);  // (the flag `ahead` goes with the punch: Punched)
    return InvalAction::kPunch;
}

void PageTable::Punched(uint32_t p) {
    const Page &cur = Get(p);
    if (cur.state == kInvalid && cur.excl < 0 && !cur.ahead)
        return;  // (idle or as good as idle: nothing to allocate)
    Page &pg = Mut(p);
    SetState(&pg, kInvalid);
    SetMark(&pg, -1);  // a mark goes with the copy
    SetAhead(&pg, false);
}

Status PageTable::OnUpdate(uint32_t p, uint16_t encoding, const uint8_t *data, size_t len,
                           uint8_t *content, bool *applied) {
    *applied = false;
    if (Get(p).state != kValid)
        return Status::OK();
    Page &pg = Mut(p);
    Status st = ApplyDiff(content, encoding, data, len);
    if (st.ok() && pg.twin)
        st = ApplyDiff(pg.twin.get(), encoding, data, len);
    *applied = st.ok();
    return st;
}

const uint8_t *PageTable::ServeFetch(uint32_t p, uint32_t host, const uint8_t *content) {
    Page &pg = Mut(p);
    SetCopyset(&pg, pg.copyset | uint64_t(1) << host);
    return pg.twin ? pg.twin.get() : content;
}

Status PageTable::ApplyInFlight(uint32_t p, uint16_t encoding, uint8_t *data, size_t len,
                                uint8_t *content) {
    Page &pg = Mut(p);
    Status st = SwapDiff(content, encoding, data, len);  // validates; untouched on error
    if (!st.ok())
        return st;
    if (pg.twin)
        CopyDiffSpans(pg.twin.get(), content, encoding, data, len);  // the applied bytes
    pg.inflight++;
    return Status::OK();
}

void PageTable::CommitInFlight(uint32_t p, uint16_t encoding, uint8_t *data, size_t len,
                               const uint8_t *content, bool want_diff) {
    if (want_diff)
        ExtractDiff(content, encoding, data, len);
    Mut(p).inflight--;
}

void PageTable::RevertInFlight(uint32_t p, uint16_t encoding, uint8_t *data, size_t len,
                               uint8_t *content) {
    Page &pg = Mut(p);
    (void)SwapDiff(content, encoding, data, len);  // valid: ApplyInFlight checked it
    if (pg.twin)
        CopyDiffSpans(pg.twin.get(), content, encoding, data, len);
    pg.inflight--;
}

std::vector<uint32_t> PageTable::DropExcl(int host) {
    std::vector<uint32_t> out;
    if (nexcl_ == 0)
        return out;
    ForEachAllocated([this, host, &out](uint32_t p, Page &pg) {
        if (pg.excl >= 0 && (host < 0 || pg.excl == host)) {
            SetMark(&pg, -1);
            out.push_back(p);
        }
    });
    return out;
}

uint64_t PageTable::OtherHolders(uint32_t p, uint32_t self, uint32_t writer) const {
    return Get(p).copyset & ~(uint64_t(1) << self) & ~(uint64_t(1) << writer);
}

uint64_t PageTable::InvalidationTargets(uint32_t p, uint32_t self, uint32_t writer) {
    const uint64_t targets = OtherHolders(p, self, writer);
    if (writer != self) {
        Page &pg = Mut(p);
        SetCopyset(&pg, pg.copyset | uint64_t(1) << writer);
    }
    return targets;
}

void PageTable::LeftCopyset(uint32_t p, uint32_t host) {
    if (Get(p).copyset & (uint64_t(1) << host)) {
        Page &pg = Mut(p);
        SetCopyset(&pg, pg.copyset & ~(uint64_t(1) << host));
    }
}

void PageTable::DropHost(uint32_t host) {
    if (ncopies_ == 0)
        return;
    ForEachAllocated([this, host](uint32_t, Page &pg) {
        if (pg.copyset & (uint64_t(1) << host))
            SetCopyset(&pg, pg.copyset & ~(uint64_t(1) << host));
    });
}

void PageTable::BecomeOwner(const std::vector<uint64_t> &copysets) {
    // Allocated pages take the owner's state; untouched ones read as the
    // owner's idle page from now on.
    ForEachAllocated([this](uint32_t, Page &pg) {
        SetState(&pg, kValid);
        SetCopyset(&pg, 0);
        SetMark(&pg, -1);
        SetAhead(&pg, false);
    });
    owner_ = true;
    waiters_.clear();
    nvalid_ = npages_;
    nfetching_ = 0;
    for (uint32_t p = 0; p < npages_; p++) {
        if (copysets[p]) {
            Page &pg = Mut(p);
            SetCopyset(&pg, copysets[p]);
        }
    }
}

void PageTable::BecomeNonOwner(const std::vector<bool> &present) {
    ForEachAllocated([this](uint32_t, Page &pg) {
        SetState(&pg, kInvalid);
        SetCopyset(&pg, 0);
        SetMark(&pg, -1);
        SetAhead(&pg, false);
    });
    owner_ = false;
    nvalid_ = 0;
    nfetching_ = 0;  // (an owner fetches nothing)
    for (uint32_t p = 0; p < npages_; p++) {
        if (present[p])
            SetState(&Mut(p), kValid);
    }
}

}  // namespace dshm
