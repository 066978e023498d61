#include "frame.h"

#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cstdio>

#include "diff.h"

namespace dshm {

namespace {

// Where a type may be received (one bit per receiving stream).
enum Stream : uint8_t {
    kToDaemonFromClient = 1 << 0,  // dshmd reads a DSHM_ROLE_CLIENT client
    kToDaemonFromCtl = 1 << 1,     // dshmd reads dshmctl
    kToClient = 1 << 2,            // libdshm-client reads dshmd
    kToCtl = 1 << 3,               // dshmctl reads dshmd
    kToPeer = 1 << 4,              // dshmd reads dshmd
    kAnywhere = 0x1f,
};

constexpr uint32_t kHdrSize = sizeof(dshm_hdr);
constexpr uint32_t kPageMsgSize = sizeof(dshm_page) + DSHM_PAGE_SIZE;

// Header-time rule of a type: where it is accepted, payload length bounds,
// and how many fds it carries.  Payload-time checks are in CheckPayload.
struct TypeRule {
    uint16_t type;
    const char *name;
    uint8_t streams;
    uint32_t min_len;
    uint32_t max_len;
    uint8_t nfds;
};

constexpr TypeRule kRules[] = {
    {DSHM_MSG_HELLO, "HELLO", kAnywhere, sizeof(dshm_hello), sizeof(dshm_hello), 0},
    {DSHM_MSG_ERROR, "ERROR", kAnywhere, sizeof(dshm_error),
     sizeof(dshm_error) + DSHM_ERROR_TEXT_MAX, 0},
    {DSHM_MSG_ATTACH, "ATTACH", kToDaemonFromClient, sizeof(dshm_attach), sizeof(dshm_attach), 0},
    {DSHM_MSG_UFFD, "UFFD", kToDaemonFromClient, sizeof(dshm_uffd), sizeof(dshm_uffd), 1},
    {DSHM_MSG_ACQUIRE, "ACQUIRE", kToDaemonFromClient, sizeof(dshm_lock_req), sizeof(dshm_lock_req),
     0},
    {DSHM_MSG_RELEASE, "RELEASE", kToDaemonFromClient, sizeof(dshm_lock_req), sizeof(dshm_lock_req),
     0},
    {DSHM_MSG_DETACH, "DETACH", kToDaemonFromClient, 0, 0, 0},
    {DSHM_MSG_CTL_QUERY, "CTL_QUERY", kToDaemonFromCtl, sizeof(dshm_ctl_query),
     sizeof(dshm_ctl_query), 0},
    {DSHM_MSG_ATTACHED, "ATTACHED", kToClient, sizeof(dshm_attached), sizeof(dshm_attached), 1},
    {DSHM_MSG_READY, "READY", kToClient, 0, 0, 0},
    {DSHM_MSG_GRANTED, "GRANTED", kToClient, sizeof(dshm_lock_reply), sizeof(dshm_lock_reply), 0},
    {DSHM_MSG_RELEASED, "RELEASED", kToClient, sizeof(dshm_lock_reply), sizeof(dshm_lock_reply), 0},
    {DSHM_MSG_LOCK_FAILED, "LOCK_FAILED", kToClient, sizeof(dshm_lock_reply),
     sizeof(dshm_lock_reply), 0},
    {DSHM_MSG_CTL_REPLY, "CTL_REPLY", kToCtl, 0, DSHM_MAX_PAYLOAD, 0},
    {DSHM_MSG_FETCH, "FETCH", kToPeer, sizeof(dshm_fetch), sizeof(dshm_fetch), 0},
    {DSHM_MSG_PAGE, "PAGE", kToPeer, sizeof(dshm_page), kPageMsgSize, 0},
    {DSHM_MSG_P_ACQUIRE, "P_ACQUIRE", kToPeer, sizeof(dshm_p_lock), sizeof(dshm_p_lock), 0},
    {DSHM_MSG_P_GRANT, "P_GRANT", kToPeer, sizeof(dshm_p_lock), sizeof(dshm_p_lock), 0},
    {DSHM_MSG_WRITEBACK, "WRITEBACK", kToPeer, sizeof(dshm_writeback) + kRunsMinSize,
     sizeof(dshm_writeback) + kMaxEncodedDiff, 0},
    {DSHM_MSG_P_RELEASE, "P_RELEASE", kToPeer, sizeof(dshm_p_release), sizeof(dshm_p_release), 0},
    {DSHM_MSG_P_RELEASE_ACK, "P_RELEASE_ACK", kToPeer, sizeof(dshm_p_release_ack),
     sizeof(dshm_p_release_ack), 0},
    {DSHM_MSG_INVALIDATE, "INVALIDATE", kToPeer, sizeof(dshm_pagelist) + 4,
     sizeof(dshm_pagelist) + 4 * DSHM_MAX_INVAL_PAGES, 0},
    {DSHM_MSG_INVAL_ACK, "INVAL_ACK", kToPeer, sizeof(dshm_pagelist),
     sizeof(dshm_pagelist) + 4 * DSHM_MAX_INVAL_PAGES, 0},
    {DSHM_MSG_EXCL_GRANT, "EXCL_GRANT", kToPeer, sizeof(dshm_pagelist) + 4,
     sizeof(dshm_pagelist) + 4 * DSHM_MAX_INVAL_PAGES, 0},
    {DSHM_MSG_EXCL_REVOKE, "EXCL_REVOKE", kToPeer, sizeof(dshm_pagelist) + 4,
     sizeof(dshm_pagelist) + 4 * DSHM_MAX_INVAL_PAGES, 0},
    {DSHM_MSG_EXCL_REVOKED, "EXCL_REVOKED", kToPeer, sizeof(dshm_pagelist) + 4,
     sizeof(dshm_pagelist) + 4 * DSHM_MAX_INVAL_PAGES, 0},
    {DSHM_MSG_UPDATE, "UPDATE", kToPeer, sizeof(dshm_writeback) + kRunsMinSize,
     sizeof(dshm_writeback) + kMaxEncodedDiff, 0},
    {DSHM_MSG_UPDATE_ACK, "UPDATE_ACK", kToPeer, sizeof(dshm_page), sizeof(dshm_page), 0},
    {DSHM_MSG_CLIENT_GONE, "CLIENT_GONE", kToPeer, sizeof(dshm_p_lock), sizeof(dshm_p_lock), 0},
    {DSHM_MSG_MIGRATE_OUT, "MIGRATE_OUT", kToDaemonFromClient, 0, 0, 0},
    {DSHM_MSG_ADOPT, "ADOPT", kToDaemonFromClient, sizeof(dshm_handoff), sizeof(dshm_handoff), 0},
    {DSHM_MSG_MIGRATE_READY, "MIGRATE_READY", kToClient, sizeof(dshm_handoff), sizeof(dshm_handoff),
     0},
    {DSHM_MSG_ADOPTED, "ADOPTED", kToClient, sizeof(dshm_adopted), sizeof(dshm_adopted), 0},
    {DSHM_MSG_P_FLUSH, "P_FLUSH", kToPeer, sizeof(dshm_p_flush), sizeof(dshm_p_flush), 0},
    {DSHM_MSG_P_FLUSH_ACK, "P_FLUSH_ACK", kToPeer, sizeof(dshm_p_release_ack),
     sizeof(dshm_p_release_ack), 0},
    {DSHM_MSG_P_ADOPT, "P_ADOPT", kToPeer, sizeof(dshm_p_adopt), sizeof(dshm_p_adopt), 0},
    {DSHM_MSG_P_ADOPTED, "P_ADOPTED", kToPeer, sizeof(dshm_p_adopted), sizeof(dshm_p_adopted), 0},
    {DSHM_MSG_DROP_COPY, "DROP_COPY", kToPeer, sizeof(dshm_seg_note), sizeof(dshm_seg_note), 0},
    {DSHM_MSG_P_STATS, "P_STATS", kToPeer, sizeof(dshm_stats),
     sizeof(dshm_stats) + DSHM_MAX_STATS_VMS * sizeof(dshm_vm_activity), 0},
    {DSHM_MSG_OWN_MOVING, "OWN_MOVING", kToPeer, sizeof(dshm_seg_note), sizeof(dshm_seg_note), 0},
    {DSHM_MSG_OWN_MOVING_ACK, "OWN_MOVING_ACK", kToPeer, sizeof(dshm_seg_note),
     sizeof(dshm_seg_note), 0},
    {DSHM_MSG_OWN_PAGE, "OWN_PAGE", kToPeer, kPageMsgSize, kPageMsgSize, 0},
    {DSHM_MSG_OWN_LOCKS, "OWN_LOCKS", kToPeer, sizeof(dshm_pagelist),
     sizeof(dshm_pagelist) + DSHM_MAX_LOCK_ENTRIES * sizeof(dshm_lock_entry), 0},
    {DSHM_MSG_OWN_COPYSETS, "OWN_COPYSETS", kToPeer, sizeof(dshm_copysets) + 8,
     sizeof(dshm_copysets) + DSHM_MAX_COPYSETS * 8, 0},
    {DSHM_MSG_OWN_COMMIT, "OWN_COMMIT", kToPeer, sizeof(dshm_seg_note),
     sizeof(dshm_seg_note) + DSHM_ERROR_TEXT_MAX, 0},
    {DSHM_MSG_OWN_MOVED, "OWN_MOVED", kToPeer, sizeof(dshm_seg_note),
     sizeof(dshm_seg_note) + DSHM_ERROR_TEXT_MAX, 0},
    {DSHM_MSG_AUTH_CHALLENGE, "AUTH_CHALLENGE", kToPeer, sizeof(dshm_auth_challenge),
     sizeof(dshm_auth_challenge), 0},
    {DSHM_MSG_AUTH_PROOF, "AUTH_PROOF", kToPeer, sizeof(dshm_auth_proof), sizeof(dshm_auth_proof),
     0},
};

const TypeRule *RuleOf(uint16_t type) {
    for (const TypeRule &r : kRules) {
        if (r.type == type) {
            return &r;
        }
    }
    return nullptr;
}

template <typename T>
T Get(const std::vector<uint8_t> &payload) {
    T value;
    memcpy(&value, payload.data(), sizeof(T));
    return value;
}

// Each Check* returns an empty string when fine, else what is wrong.
std::string CheckNul(const char *field, size_t n, const char *what) {
    if (memchr(field, '\0', n) == nullptr) {
        return std::string(what) + " not NUL-terminated";
    }
    return "";
}

std::string CheckSegment(const char (&seg)[DSHM_SEGNAME_LEN]) {
    std::string err = CheckNul(seg, sizeof seg, "segment name");
    if (err.empty() && !IsValidSegmentName(NameOf(seg))) {
        err = "invalid segment name";
    }
    return err;
}

std::string CheckLock(uint32_t lock) {
    return lock < DSHM_MAX_LOCKS ? "" : "lock id " + std::to_string(lock) + " out of range";
}

std::string CheckHost(uint32_t host) {
    return host < DSHM_MAX_HOSTS ? "" : "host id " + std::to_string(host) + " out of range";
}

// `zero_ok`: whether DSHM_OK is acceptable; otherwise an error code is required.
std::string CheckStatus(uint32_t status, bool zero_ok, bool error_ok) {
    if (status == DSHM_OK) {
        return zero_ok ? "" : "status 0 where an error is required";
    }
    if (!error_ok) {
        return "status " + std::to_string(status) + " where 0 is required";
    }
    return IsKnownStatusCode(status) ? "" : "unknown status " + std::to_string(status);
}

// First non-empty string, or "".
std::string FirstError(std::initializer_list<std::string> errs) {
    for (const std::string &e : errs) {
        if (!e.empty()) {
            return e;
        }
    }
    return "";
}

// INVALIDATE's non-empty list is enforced by its minimum length.
std::string CheckPageList(const std::vector<uint8_t> &p) {
    const auto pl = Get<dshm_pagelist>(p);
    const size_t n = (p.size() - sizeof(dshm_pagelist)) / 4;
    if (pl.count > DSHM_MAX_INVAL_PAGES || pl.count != n ||
        (p.size() - sizeof(dshm_pagelist)) % 4 != 0) {
        return "count " + std::to_string(pl.count) + " inconsistent with length " +
               std::to_string(p.size());
    }
    return CheckSegment(pl.segment);
}

// Checks the payload of a complete frame whose header passed CheckHeader.
// Returns "" or the reason.  HELLO is handled by the reader (it needs state).
std::string CheckPayload(uint16_t type, const std::vector<uint8_t> &p) {
    switch (type) {
        case DSHM_MSG_ERROR:
            return CheckStatus(Get<dshm_error>(p).status, false, true);
        case DSHM_MSG_ATTACH: {
            const auto a = Get<dshm_attach>(p);
            return FirstError(
                {CheckSegment(a.segment), CheckNul(a.vm_name, sizeof a.vm_name, "vm_name")});
        }
        case DSHM_MSG_UFFD: {
            const auto u = Get<dshm_uffd>(p);
            if (u.length == 0 || u.base % DSHM_PAGE_SIZE != 0 || u.length % DSHM_PAGE_SIZE != 0 ||
                u.base + u.length < u.base) {
                return "bad range base " + std::to_string(u.base) + " length " +
                       std::to_string(u.length);
            }
            return "";
        }
        case DSHM_MSG_ACQUIRE:
        case DSHM_MSG_RELEASE:
            // lock_id is deliberately not checked: answered with E_BAD_LOCK.
            return Get<dshm_lock_req>(p).flags == 0 ? "" : "non-zero flags";
        case DSHM_MSG_CTL_QUERY: {
            const auto q = Get<dshm_ctl_query>(p);
            if (q.what < DSHM_CTL_SEGMENTS || q.what > DSHM_CTL_STATS) {
                return "unknown query " + std::to_string(q.what);
            }
            return q.flags == 0 ? "" : "non-zero flags";
        }
        case DSHM_MSG_ATTACHED: {
            const auto a = Get<dshm_attached>(p);
            if (a.size == 0 || a.size % DSHM_PAGE_SIZE != 0) {
                return "bad segment size " + std::to_string(a.size);
            }
            if (a.page_size != DSHM_PAGE_SIZE) {
                return "bad page size " + std::to_string(a.page_size);
            }
            if (a.nlocks == 0 || a.nlocks > DSHM_MAX_LOCKS) {
                return "bad lock count " + std::to_string(a.nlocks);
            }
            return CheckHost(a.owner_host);
        }
        case DSHM_MSG_GRANTED:
        case DSHM_MSG_RELEASED: {
            const auto r = Get<dshm_lock_reply>(p);
            return FirstError({CheckLock(r.lock_id), CheckStatus(r.status, true, false)});
        }
        case DSHM_MSG_LOCK_FAILED:
            // lock_id echoes the request, which may be the bad id.
            return CheckStatus(Get<dshm_lock_reply>(p).status, false, true);
        case DSHM_MSG_FETCH: {
            const auto f = Get<dshm_fetch>(p);
            return FirstError({CheckSegment(f.segment),
                               (f.flags & ~DSHM_FETCH_WRITE) == 0 ? "" : "unknown flags"});
        }
        case DSHM_MSG_PAGE: {
            const auto pg = Get<dshm_page>(p);
            const size_t want = pg.status == DSHM_OK ? kPageMsgSize : sizeof(dshm_page);
            if (p.size() != want) {
                return "length " + std::to_string(p.size()) + " with status " +
                       std::to_string(pg.status) + ", expected " + std::to_string(want);
            }
            return FirstError({CheckSegment(pg.segment), CheckStatus(pg.status, true, true)});
        }
        case DSHM_MSG_UPDATE_ACK: {
            const auto pg = Get<dshm_page>(p);
            return FirstError({CheckSegment(pg.segment), CheckStatus(pg.status, true, true)});
        }
        case DSHM_MSG_P_ACQUIRE:
        case DSHM_MSG_P_GRANT:
        case DSHM_MSG_CLIENT_GONE: {
            const auto l = Get<dshm_p_lock>(p);
            return FirstError({CheckSegment(l.segment),
                               type == DSHM_MSG_CLIENT_GONE ? "" : CheckLock(l.lock_id),
                               CheckHost(l.host_id),
                               type == DSHM_MSG_P_ACQUIRE ? CheckStatus(l.status, true, false)
                               : type == DSHM_MSG_P_GRANT ? CheckStatus(l.status, true, true)
                                                          : ""});
        }
        case DSHM_MSG_WRITEBACK:
        case DSHM_MSG_UPDATE: {  // both carry one page's diff
            const auto w = Get<dshm_writeback>(p);
            std::string err = CheckSegment(w.segment);
            if (!err.empty()) {
                return err;
            }
            const size_t n = p.size() - sizeof(dshm_writeback);
            Status s = ValidateDiff(w.encoding, p.data() + sizeof(dshm_writeback), n);
            return s.ok() ? "" : s.message();
        }
        case DSHM_MSG_P_RELEASE: {
            const auto r = Get<dshm_p_release>(p);
            return FirstError(
                {CheckSegment(r.segment), CheckLock(r.lock_id), CheckHost(r.host_id)});
        }
        case DSHM_MSG_P_RELEASE_ACK: {
            const auto r = Get<dshm_p_release_ack>(p);
            return FirstError(
                {CheckSegment(r.segment), CheckLock(r.lock_id), CheckStatus(r.status, true, true)});
        }
        case DSHM_MSG_INVALIDATE:
        case DSHM_MSG_INVAL_ACK:
        case DSHM_MSG_EXCL_GRANT:
        case DSHM_MSG_EXCL_REVOKE:
        case DSHM_MSG_EXCL_REVOKED:
            return CheckPageList(p);
        case DSHM_MSG_ADOPT:
        case DSHM_MSG_MIGRATE_READY:
            return CheckHost(Get<dshm_handoff>(p).host_id);
        case DSHM_MSG_ADOPTED: {
            const auto a = Get<dshm_adopted>(p);
            return FirstError({CheckStatus(a.status, true, true), CheckHost(a.owner_host)});
        }
        case DSHM_MSG_P_FLUSH: {
            const auto r = Get<dshm_p_flush>(p);
            return FirstError({CheckSegment(r.segment), r.lock_id == 0 ? "" : "lock id in P_FLUSH",
                               CheckHost(r.host_id)});
        }
        case DSHM_MSG_P_FLUSH_ACK: {
            const auto r = Get<dshm_p_release_ack>(p);
            return FirstError({CheckSegment(r.segment),
                               r.lock_id == 0 ? "" : "lock id in P_FLUSH_ACK",
                               CheckStatus(r.status, true, true)});
        }
        case DSHM_MSG_P_ADOPT: {
            const auto a = Get<dshm_p_adopt>(p);
            return FirstError({CheckSegment(a.segment), CheckHost(a.from_host),
                               CheckHost(a.to_host),
                               CheckNul(a.vm_name, sizeof a.vm_name, "vm_name")});
        }
        case DSHM_MSG_P_ADOPTED: {
            const auto a = Get<dshm_p_adopted>(p);
            return FirstError({CheckSegment(a.segment), CheckStatus(a.status, true, true)});
        }
        case DSHM_MSG_DROP_COPY:
        case DSHM_MSG_OWN_MOVING:
        case DSHM_MSG_OWN_MOVING_ACK:
        case DSHM_MSG_OWN_COMMIT:
        case DSHM_MSG_OWN_MOVED: {
            const auto n = Get<dshm_seg_note>(p);
            return FirstError({CheckSegment(n.segment), CheckHost(n.host_id)});
        }
        case DSHM_MSG_P_STATS: {
            const auto st = Get<dshm_stats>(p);
            const size_t bytes = p.size() - sizeof(dshm_stats);
            if (bytes % sizeof(dshm_vm_activity) != 0 ||
                st.count != bytes / sizeof(dshm_vm_activity)) {
                return "count " + std::to_string(st.count) + " inconsistent with length " +
                       std::to_string(p.size());
            }
            if (st.flags & ~DSHM_STATS_MERGED)
                return "unknown flags";
            for (uint32_t i = 0; i < st.count; i++) {
                dshm_vm_activity a;
                memcpy(&a, p.data() + sizeof(dshm_stats) + i * sizeof a, sizeof a);
                std::string err =
                    FirstError({CheckNul(a.vm_name, sizeof a.vm_name, "vm_name"),
                                CheckHost(a.host_id), a.attached <= 1 ? "" : "attached not 0/1"});
                if (!err.empty())
                    return err;
            }
            return CheckSegment(st.segment);
        }
        case DSHM_MSG_OWN_PAGE: {
            const auto pg = Get<dshm_page>(p);
            return FirstError({CheckSegment(pg.segment), CheckStatus(pg.status, true, false)});
        }
        case DSHM_MSG_OWN_LOCKS: {
            const auto pl = Get<dshm_pagelist>(p);
            const size_t bytes = p.size() - sizeof(dshm_pagelist);
            if (bytes % sizeof(dshm_lock_entry) != 0 ||
                pl.count != bytes / sizeof(dshm_lock_entry)) {
                return "count " + std::to_string(pl.count) + " inconsistent with length " +
                       std::to_string(p.size());
            }
            for (uint32_t i = 0; i < pl.count; i++) {
                dshm_lock_entry e;
                memcpy(&e, p.data() + sizeof(dshm_pagelist) + i * sizeof e, sizeof e);
                std::string err = FirstError({CheckLock(e.lock_id), CheckHost(e.host_id)});
                if (!err.empty())
                    return err;
            }
            return CheckSegment(pl.segment);
        }
        case DSHM_MSG_OWN_COPYSETS: {
            const auto c = Get<dshm_copysets>(p);
            const size_t bytes = p.size() - sizeof(dshm_copysets);
            if (bytes % 8 != 0 || c.count != bytes / 8) {
                return "count " + std::to_string(c.count) + " inconsistent with length " +
                       std::to_string(p.size());
            }
            return CheckSegment(c.segment);
        }
    }
    return "";  // DETACH, READY, CTL_REPLY: nothing beyond the length
}

}  // namespace

// ---------------------------------------------------------------- Frame

Frame::Frame(Frame &&other) noexcept
    : hdr(other.hdr), payload(std::move(other.payload)), fds(std::move(other.fds)) {
    other.fds.clear();
}

Frame &Frame::operator=(Frame &&other) noexcept {
    if (this != &other) {
        for (int fd : fds) {
            if (fd >= 0) {
                close(fd);
            }
        }
        hdr = other.hdr;
        payload = std::move(other.payload);
        fds = std::move(other.fds);
        other.fds.clear();
    }
    return *this;
}

Frame::~Frame() {
    for (int fd : fds) {
        if (fd >= 0) {
            close(fd);
        }
    }
}

// ---------------------------------------------------------- FrameReader

FrameReader::FrameReader(Channel channel, Receiver receiver, ClientRole role)
    : channel_(channel), receiver_(receiver), role_(role) {
    if (channel == Channel::kPeer) {
        role_ = ClientRole::kUnknown;
    } else if (receiver == Receiver::kDaemon) {
        assert(role == ClientRole::kUnknown);
        role_ = ClientRole::kUnknown;
    } else {
        assert(role != ClientRole::kUnknown);
    }
}

FrameReader::~FrameReader() {
    CloseAllFds();
}

void FrameReader::CloseAllFds() {
    for (const PendingFd &p : fds_) {
        close(p.fd);
    }
    fds_.clear();
}

Status FrameReader::Fail(Status s) {
    error_ = s;
    CloseAllFds();
    buf_.reset();
    cap_ = size_ = head_ = 0;
    return s;
}

void FrameReader::Reserve(size_t len) {
    if (head_ == size_) {
        size_ = head_ = 0;
    } else if (head_ >= 4096 && head_ >= size_ / 2) {
        memmove(buf_.get(), buf_.get() + head_, size_ - head_);
        size_ -= head_;
        head_ = 0;
    }
    if (cap_ - size_ >= len) {
        return;
    }
    if (head_ > 0) {  // growing anyway: drop the consumed bytes in the copy
        size_ -= head_;
        memmove(buf_.get(), buf_.get() + head_, size_);
        head_ = 0;
        if (cap_ - size_ >= len) {
            return;
        }
    }
    const size_t cap = std::max(size_ + len, 2 * cap_);
    std::unique_ptr<uint8_t[]> grown(new uint8_t[cap]);  // not zeroed
    if (size_ > 0) {
        memcpy(grown.get(), buf_.get(), size_);
    }
    buf_ = std::move(grown);
    cap_ = cap;
}

void FrameReader::Feed(const uint8_t *data, size_t len) {
    if (failed() || len == 0) {
        return;
    }
    Reserve(len);
    memcpy(buf_.get() + size_, data, len);
    size_ += len;
    fed_ += len;
}

uint8_t *FrameReader::Prepare(size_t max) {
    Reserve(max);
    return buf_.get() + size_;
}

void FrameReader::Commit(size_t n) {
    if (failed() || n == 0) {
        return;
    }
    assert(n <= cap_ - size_);
    size_ += n;
    fed_ += n;
}

void FrameReader::AddFds(std::span<const int> fds) {
    for (int fd : fds) {
        if (failed() || fd < 0) {
            if (fd >= 0) {
                close(fd);
            }
            continue;
        }
        fds_.push_back(PendingFd{fed_, fd});
    }
}

Status FrameReader::CheckHeader(const dshm_hdr &hdr, size_t fds_here) const {
    if (hdr.magic != DSHM_MAGIC) {
        char buf[64];
        snprintf(buf, sizeof buf, "bad magic 0x%08x", hdr.magic);
        return Status::Proto(buf);
    }
    const TypeRule *rule = RuleOf(hdr.type);
    if (rule == nullptr) {
        return Status::Proto("unknown type " + MsgTypeName(hdr.type));
    }
    const std::string name = rule->name;
    if (!hello_seen_ && hdr.type != DSHM_MSG_HELLO && hdr.type != DSHM_MSG_ERROR) {
        return Status::Proto(name + " before HELLO");
    }
    if (hello_seen_ && hdr.type == DSHM_MSG_HELLO) {
        return Status::Proto("second HELLO");
    }
    if (channel_ == Channel::kPeer && hello_seen_ && hdr.type != DSHM_MSG_ERROR) {
        // The authentication handshake, in order: nothing else before the
        // receiver has checked the proof (SetAuthenticated).
        const uint16_t want = stage_ == PeerStage::kChallenge ? DSHM_MSG_AUTH_CHALLENGE
                              : stage_ == PeerStage::kProof   ? DSHM_MSG_AUTH_PROOF
                                                              : 0;
        if (stage_ != PeerStage::kUp && hdr.type != want) {
            return Status::Auth(name + " before authentication" +
                                (want ? " (expected " + MsgTypeName(want) + ")" : ""));
        }
        if (stage_ == PeerStage::kUp &&
            (hdr.type == DSHM_MSG_AUTH_CHALLENGE || hdr.type == DSHM_MSG_AUTH_PROOF)) {
            return Status::Proto(name + " after authentication");
        }
    }
    uint8_t stream;
    if (channel_ == Channel::kPeer) {
        stream = kToPeer;
    } else if (receiver_ == Receiver::kClient) {
        stream = role_ == ClientRole::kCtl ? kToCtl : kToClient;
    } else if (role_ == ClientRole::kUnknown) {
        stream = kToDaemonFromClient | kToDaemonFromCtl;  // only HELLO, ERROR get here
    } else {
        stream = role_ == ClientRole::kCtl ? kToDaemonFromCtl : kToDaemonFromClient;
    }
    if ((rule->streams & stream) != stream) {
        return Status::Proto(name + " not allowed on this channel/direction/role");
    }
    if (hdr.flags != 0) {
        return Status::Proto(name + " with non-zero header flags " + std::to_string(hdr.flags));
    }
    if (hdr.len < rule->min_len || hdr.len > rule->max_len) {
        return Status::Proto(name + " payload of " + std::to_string(hdr.len) + " bytes, expected " +
                             std::to_string(rule->min_len) + ".." + std::to_string(rule->max_len));
    }
    if (fds_here != rule->nfds) {
        return Status::Proto(name + " with " + std::to_string(fds_here) + " fds, expected " +
                             std::to_string(rule->nfds));
    }
    return Status::OK();
}

Status FrameReader::Next(std::optional<Frame> *frame) {
    frame->reset();
    if (failed()) {
        return error_;
    }
    if (buffered() < kHdrSize) {
        // Fds can only be attached to the first byte of a message; any fd
        // already queued here is at pos_ (checked once the header is here).
        return Status::OK();
    }
    dshm_hdr hdr;
    memcpy(&hdr, buf_.get() + head_, kHdrSize);
    const uint64_t end = pos_ + kHdrSize + hdr.len;

    size_t fds_here = 0;
    while (fds_here < fds_.size() && fds_[fds_here].pos == pos_) {
        fds_here++;
    }
    // Built only for an error message (not per frame: a release streams
    // hundreds of frames).
    const auto where = [this] { return "message at stream offset " + std::to_string(pos_) + ": "; };
    Status s = CheckHeader(hdr, fds_here);
    if (!s.ok()) {
        return Fail(Status::FromCode(s.code(), where() + s.message()));
    }
    if (fds_here < fds_.size() && fds_[fds_here].pos < end) {
        return Fail(Status::Proto(where() + "fd attached inside the message"));
    }
    if (buffered() < kHdrSize + hdr.len) {
        return Status::OK();
    }

    const uint8_t *body = buf_.get() + head_ + kHdrSize;
    std::vector<uint8_t> payload(body, body + hdr.len);
    if (hdr.type == DSHM_MSG_HELLO) {
        const auto h = Get<dshm_hello>(payload);
        const uint16_t version =
            channel_ == Channel::kPeer ? DSHM_PEER_VERSION : DSHM_PROTO_VERSION;
        if (h.version != version) {
            return Fail(Status::Version(
                where() + "HELLO version " + std::to_string(h.version) + ", this side speaks " +
                std::to_string(version) +
                (channel_ == Channel::kPeer ? " (peer version 3: authenticated peers)" : "")));
        }
        std::string err = CheckNul(h.name, sizeof h.name, "name");
        if (err.empty()) {
            if (channel_ == Channel::kPeer) {
                err = h.role == DSHM_ROLE_PEER ? CheckHost(h.host_id) : "role is not PEER";
            } else if (receiver_ == Receiver::kDaemon) {
                if (h.role != DSHM_ROLE_CLIENT && h.role != DSHM_ROLE_CTL) {
                    err = "role " + std::to_string(h.role) + " on a client socket";
                } else if (h.host_id != 0) {
                    err = "client host_id must be 0";
                }
            } else if (h.role < DSHM_ROLE_CLIENT || h.role > DSHM_ROLE_CTL) {
                err = "unknown role " + std::to_string(h.role);
            } else {
                err = CheckHost(h.host_id);
            }
        }
        if (!err.empty()) {
            return Fail(Status::Proto(where() + "HELLO: " + err));
        }
        if (channel_ == Channel::kClient && receiver_ == Receiver::kDaemon) {
            role_ = h.role == DSHM_ROLE_CTL ? ClientRole::kCtl : ClientRole::kClient;
        }
        hello_seen_ = true;
        stage_ = PeerStage::kChallenge;
    } else if (hdr.type == DSHM_MSG_AUTH_CHALLENGE) {
        stage_ = PeerStage::kProof;
    } else if (hdr.type == DSHM_MSG_AUTH_PROOF) {
        stage_ = PeerStage::kVerdict;
    } else {
        std::string err = CheckPayload(hdr.type, payload);
        if (!err.empty()) {
            return Fail(Status::Proto(where() + MsgTypeName(hdr.type) + ": " + err));
        }
    }

    Frame f;
    f.hdr = hdr;
    f.payload = std::move(payload);
    for (size_t i = 0; i < fds_here; i++) {
        f.fds.push_back(fds_.front().fd);
        fds_.pop_front();
    }
    head_ += kHdrSize + hdr.len;
    pos_ = end;
    frame->emplace(std::move(f));
    return Status::OK();
}

void FrameReader::SetAuthenticated() {
    assert(channel_ == Channel::kPeer && stage_ == PeerStage::kVerdict);
    stage_ = PeerStage::kUp;
}

// ------------------------------------------------------------- helpers

std::string MsgTypeName(uint16_t type) {
    const TypeRule *rule = RuleOf(type);
    if (rule != nullptr) {
        return rule->name;
    }
    char buf[32];
    snprintf(buf, sizeof buf, "UNKNOWN(0x%04x)", type);
    return buf;
}

bool IsValidSegmentName(std::string_view name) {
    if (name.empty() || name.size() >= DSHM_SEGNAME_LEN || name == "." || name == "..") {
        return false;
    }
    return std::all_of(name.begin(), name.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '.' || c == '_' || c == '-';
    });
}

std::vector<uint8_t> Encode(uint16_t type, uint32_t tag, const void *fixed, size_t fixed_len,
                            const void *extra, size_t extra_len) {
    assert(fixed_len + extra_len <= DSHM_MAX_PAYLOAD);
    assert((fixed != nullptr || fixed_len == 0) && (extra != nullptr || extra_len == 0));
    dshm_hdr hdr{};
    hdr.magic = DSHM_MAGIC;
    hdr.type = type;
    hdr.flags = 0;
    hdr.len = static_cast<uint32_t>(fixed_len + extra_len);
    hdr.tag = tag;
    std::vector<uint8_t> out(kHdrSize + fixed_len + extra_len);
    memcpy(out.data(), &hdr, kHdrSize);
    if (fixed_len > 0) {
        memcpy(out.data() + kHdrSize, fixed, fixed_len);
    }
    if (extra_len > 0) {
        memcpy(out.data() + kHdrSize + fixed_len, extra, extra_len);
    }
    return out;
}

std::optional<std::vector<uint8_t>> EncodeBounded(uint16_t type, uint32_t tag, const void *fixed,
                                                  size_t fixed_len, const void *extra,
                                                  size_t extra_len) {
    if (fixed_len > DSHM_MAX_PAYLOAD || extra_len > DSHM_MAX_PAYLOAD - fixed_len)
        return std::nullopt;
    return Encode(type, tag, fixed, fixed_len, extra, extra_len);
}

std::vector<uint8_t> EncodeError(uint32_t tag, const Status &status, uint16_t ref_type) {
    assert(!status.ok());
    dshm_error e{};
    e.status = status.code();
    e.ref_type = ref_type;
    const std::string &text = status.message();
    size_t n = std::min<size_t>(text.size(), DSHM_ERROR_TEXT_MAX);
    if (n < text.size()) {
        // Do not cut a UTF-8 sequence: back up over continuation bytes.
        while (n > 0 && (static_cast<uint8_t>(text[n]) & 0xc0) == 0x80) {
            n--;
        }
    }
    return EncodeMsg(DSHM_MSG_ERROR, tag, e, text.data(), n);
}

}  // namespace dshm
