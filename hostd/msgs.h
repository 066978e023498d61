// msgs: typed builders for the peer messages that several roles send, so
// that each is built in one place (wire.h has the layouts).
//
// Thread safety: pure functions, except SendPageMsg (a Conn: loop mutex).
#pragma once

#include <sys/uio.h>

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "conn.h"
#include "frame.h"
#include "status.h"
#include "thread_annotations.h"
#include "watch.h"

namespace dshm {

// FETCH of page `pg` of `segment`.
inline std::vector<uint8_t> FetchMsg(std::string_view segment, uint32_t pg) {
    dshm_fetch m = {};
    SetName(m.segment, segment);
    m.page = pg;
    return EncodeMsg(DSHM_MSG_FETCH, 0, m);
}

// P_ACQUIRE, P_GRANT or CLIENT_GONE (lock 0) for holder (host, client).
inline std::vector<uint8_t> LockMsg(uint16_t type, std::string_view segment, uint32_t lock,
                                    uint32_t host, uint32_t client) {
    dshm_p_lock m = {};
    SetName(m.segment, segment);
    m.lock_id = lock;
    m.host_id = host;
    m.client_id = client;
    return EncodeMsg(type, 0, m);
}

// P_RELEASE_ACK or P_FLUSH_ACK.
inline std::vector<uint8_t> ReleaseAckMsg(uint16_t type, uint32_t tag, std::string_view segment,
                                          uint32_t lock, uint32_t client, uint32_t status) {
    dshm_p_release_ack m = {};
    SetName(m.segment, segment);
    m.lock_id = lock;
    m.client_id = client;
    m.status = status;
    return EncodeMsg(type, tag, m);
}

// A dshm_seg_note message (DROP_COPY, OWN_MOVING(_ACK), OWN_COMMIT,
// OWN_MOVED) with an optional reason text, cut to DSHM_ERROR_TEXT_MAX.
inline std::vector<uint8_t> SegNoteMsg(uint16_t type, std::string_view segment, uint32_t host,
                                       uint32_t value = 0, std::string_view text = {}) {
    dshm_seg_note m = {};
    SetName(m.segment, segment);
    m.host_id = host;
    m.value = value;
    const size_t len = std::min<size_t>(text.size(), DSHM_ERROR_TEXT_MAX);
    return EncodeMsg(type, 0, m, text.data(), len);
}

// `items` cut into messages of at most `max` entries each: a struct
// dshm_pagelist whose count is the chunk's size, then the entries.  Used for
// page lists (INVALIDATE, INVAL_ACK, EXCL_*: max DSHM_MAX_INVAL_PAGES) and
// lock entries (OWN_LOCKS: DSHM_MAX_LOCK_ENTRIES).
template <typename T>
std::vector<std::vector<uint8_t>> ListMsgs(uint16_t type, uint32_t tag, std::string_view segment,
                                           std::span<const T> items, size_t max) {
    std::vector<std::vector<uint8_t>> out;
    for (size_t i = 0; i < items.size(); i += max) {
        const size_t n = std::min(max, items.size() - i);
        dshm_pagelist m = {};
        SetName(m.segment, segment);
        m.count = static_cast<uint32_t>(n);
        out.push_back(EncodeMsg(type, tag, m, items.data() + i, n * sizeof(T)));
    }
    return out;
}

// One page list message (a chunk of at most DSHM_MAX_INVAL_PAGES pages).
inline std::vector<uint8_t> PageListMsg(uint16_t type, uint32_t tag, std::string_view segment,
                                        std::span<const uint32_t> pages) {
    dshm_pagelist m = {};
    SetName(m.segment, segment);
    m.count = static_cast<uint32_t>(pages.size());
    return EncodeMsg(type, tag, m, pages.data(), pages.size() * 4);
}

// Sends a message carrying one page (PAGE, OWN_PAGE): header and `m`, then
// the page straight from where it lies (Conn::SendGather).
inline void SendPageMsg(Conn *conn, uint16_t type, uint32_t tag, const dshm_page &m,
                        const uint8_t *page) REQUIRES(loop_mutex) {
    const std::vector<uint8_t> head = EncodeHead(type, tag, m, DSHM_PAGE_SIZE);
    const struct iovec iov[2] = {{const_cast<uint8_t *>(head.data()), head.size()},
                                 {const_cast<uint8_t *>(page), DSHM_PAGE_SIZE}};
    conn->SendGather(iov);
}

}  // namespace dshm

namespace dshm {

// The page numbers of a validated page list (INVALIDATE, EXCL_*), each
// checked against the segment's size (E_PROTO otherwise).
inline Status PagesOf(const Frame &f, uint32_t npages, std::vector<uint32_t> *out) {
    auto m = f.Fixed<dshm_pagelist>();
    out->resize(m.count);
    memcpy(out->data(), f.Extra(sizeof m).data(), 4 * size_t(m.count));
    for (uint32_t pg : *out) {
        if (pg >= npages)
            return Status::Proto("page " + std::to_string(pg) + " out of range");
    }
    return Status::OK();
}

}  // namespace dshm
