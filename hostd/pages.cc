#include "pages.h"

#include <algorithm>
#include <cstring>

#include "diff.h"
#include "dshm/wire.h"

namespace dshm {
namespace {
constexpr size_t kPage = DSHM_PAGE_SIZE;
}

PageTable::PageTable(uint32_t npages, bool owner) : pages_(npages), owner_(owner) {
    if (owner_) {
        for (Page &pg : pages_)
            pg.state = kValid;
    }
}

std::unique_ptr<uint8_t[]> PageTable::TakeTwin() {
    if (spare_twins_.empty())
        return std::unique_ptr<uint8_t[]>(new uint8_t[kPage]);
    std::unique_ptr<uint8_t[]> t = std::move(spare_twins_.back());
    spare_twins_.pop_back();
    return t;
}

void PageTable::DropTwin(Page *pg) {
    if (spare_twins_.size() < kMaxSpareTwins)
        spare_twins_.push_back(std::move(pg->twin));
    pg->twin.reset();
}

PageTable::MissingAction PageTable::OnMissingFault(uint32_t p, uint32_t client, uint64_t addr) {
    Page &pg = pages_[p];
    if (owner_)
        return MissingAction::kFillZero;
    switch (pg.state) {
        case kValid:
            return MissingAction::kWake;
        case kFetching:
            pg.waiters.push_back({client, addr});
            return MissingAction::kWait;
        case kInvalid:
            break;
    }
    pg.state = kFetching;
    nfetching_++;
    pg.waiters.push_back({client, addr});
    return MissingAction::kFetch;
}

PageTable::WriteAction PageTable::OnWriteFault(uint32_t p, bool first, const uint8_t *content) {
    Page &pg = pages_[p];
    if (pg.state != kValid)
        return WriteAction::kRefault;
    if (first && pg.ndirtiers++ == 0) {
        pg.twin = TakeTwin();
        memcpy(pg.twin.get(), content, kPage);
    }
    return WriteAction::kUnprotect;
}

std::vector<PageTable::Waiter> PageTable::TakeWaiters(uint32_t p) {
    Page &pg = pages_[p];
    if (pg.state != kFetching)
        return {};
    std::vector<Waiter> out;
    out.swap(pg.waiters);
    return out;
}

void PageTable::Installed(uint32_t p, bool ok) {
    if (pages_[p].state == kFetching)
        nfetching_--;
    pages_[p].state = ok ? kValid : kInvalid;
    if (!ok)
        pages_[p].ahead = false;
}

bool PageTable::StartAheadFetch(uint32_t p) {
    Page &pg = pages_[p];
    if (owner_ || pg.state != kInvalid)
        return false;
    pg.state = kFetching;
    nfetching_++;
    pg.ahead = true;
    return true;
}

void PageTable::ForgetClient(uint32_t client) {
    for (Page &pg : pages_) {
        if (!pg.waiters.empty()) {
            std::erase_if(pg.waiters, [client](const Waiter &w) { return w.client == client; });
        }
    }
}

std::vector<uint32_t> PageTable::Fetching() const {
    std::vector<uint32_t> out;
    for (uint32_t p = 0; p < size(); p++) {
        if (pages_[p].state == kFetching)
            out.push_back(p);
    }
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
    Page &pg = pages_[p];
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
    Page &pg = pages_[p];
    if (--pg.ndirtiers > 0)
        return false;
    memcpy(content, pg.twin.get(), kPage);
    DropTwin(&pg);
    return true;
}

PageTable::InvalAction PageTable::OnInvalidate(uint32_t p) {
    Page &pg = pages_[p];
    if (pg.state != kValid)
        return InvalAction::kNotHere;
    if (pg.ndirtiers > 0)
        return InvalAction::kKeep;
    pg.state = kInvalid;  // (the flag `ahead` goes with the punch: Punched)
    return InvalAction::kPunch;
}

void PageTable::Punched(uint32_t p) {
    if (pages_[p].state == kFetching)
        nfetching_--;
    pages_[p].state = kInvalid;
    pages_[p].excl = -1;  // a mark goes with the copy
    pages_[p].ahead = false;
}

Status PageTable::OnUpdate(uint32_t p, uint16_t encoding, const uint8_t *data, size_t len,
                           uint8_t *content, bool *applied) {
    Page &pg = pages_[p];
    *applied = false;
    if (pg.state != kValid)
        return Status::OK();
    Status st = ApplyDiff(content, encoding, data, len);
    if (st.ok() && pg.twin)
        st = ApplyDiff(pg.twin.get(), encoding, data, len);
    *applied = st.ok();
    return st;
}

const uint8_t *PageTable::ServeFetch(uint32_t p, uint32_t host, const uint8_t *content) {
    Page &pg = pages_[p];
    pg.copyset |= uint64_t(1) << host;
    return pg.twin ? pg.twin.get() : content;
}

Status PageTable::ApplyInFlight(uint32_t p, uint16_t encoding, uint8_t *data, size_t len,
                                uint8_t *content) {
    Page &pg = pages_[p];
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
    pages_[p].inflight--;
}

void PageTable::RevertInFlight(uint32_t p, uint16_t encoding, uint8_t *data, size_t len,
                               uint8_t *content) {
    Page &pg = pages_[p];
    (void)SwapDiff(content, encoding, data, len);  // valid: ApplyInFlight checked it
    if (pg.twin)
        CopyDiffSpans(pg.twin.get(), content, encoding, data, len);
    pg.inflight--;
}

std::vector<uint32_t> PageTable::DropExcl(int host) {
    std::vector<uint32_t> out;
    for (uint32_t p = 0; p < size(); p++) {
        if (pages_[p].excl >= 0 && (host < 0 || pages_[p].excl == host)) {
            pages_[p].excl = -1;
            out.push_back(p);
        }
    }
    return out;
}

uint64_t PageTable::OtherHolders(uint32_t p, uint32_t self, uint32_t writer) const {
    return pages_[p].copyset & ~(uint64_t(1) << self) & ~(uint64_t(1) << writer);
}

uint64_t PageTable::InvalidationTargets(uint32_t p, uint32_t self, uint32_t writer) {
    Page &pg = pages_[p];
    const uint64_t targets = OtherHolders(p, self, writer);
    if (writer != self)
        pg.copyset |= uint64_t(1) << writer;
    return targets;
}

void PageTable::LeftCopyset(uint32_t p, uint32_t host) {
    pages_[p].copyset &= ~(uint64_t(1) << host);
}

void PageTable::DropHost(uint32_t host) {
    for (Page &pg : pages_)
        pg.copyset &= ~(uint64_t(1) << host);
}

void PageTable::BecomeOwner(const std::vector<uint64_t> &copysets) {
    owner_ = true;
    nfetching_ = 0;
    for (uint32_t p = 0; p < size(); p++) {
        pages_[p].state = kValid;
        pages_[p].waiters.clear();
        pages_[p].copyset = copysets[p];
        pages_[p].excl = -1;
        pages_[p].ahead = false;
    }
}

void PageTable::BecomeNonOwner(const std::vector<bool> &present) {
    owner_ = false;
    nfetching_ = 0;  // (an owner fetches nothing)
    for (uint32_t p = 0; p < size(); p++) {
        pages_[p].state = present[p] ? kValid : kInvalid;
        pages_[p].copyset = 0;
        pages_[p].excl = -1;
        pages_[p].ahead = false;
    }
}

}  // namespace dshm
