// Unit tests for frame.h: the validation boundary (every accepted and every
// rejected shape of message, per channel and direction), fd ownership and
// the encoding helpers.
#include "frame.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "diff.h"

// check.h defines a fail() macro: it must follow the C++ headers.
#include "../tests/unit/check_main.h"

using dshm::Channel;
using dshm::ClientRole;
using dshm::EncodeEmpty;
using dshm::EncodeMsg;
using dshm::Frame;
using dshm::FrameReader;
using dshm::Receiver;
using dshm::SetName;
using dshm::Status;

namespace {

using Bytes = std::vector<uint8_t>;

Bytes Cat(std::initializer_list<Bytes> parts) {
    Bytes out;
    for (const Bytes &p : parts) {
        out.insert(out.end(), p.begin(), p.end());
    }
    return out;
}

// version 0: the channel's (DSHM_PEER_VERSION for role PEER).
Bytes Hello(uint16_t role, uint32_t host = 0, uint16_t version = 0) {
    dshm_hello h{};
    h.version = version ? version
                        : role == DSHM_ROLE_PEER ? DSHM_PEER_VERSION : DSHM_PROTO_VERSION;
    h.role = role;
    h.host_id = host;
    h.incarnation = 42;
    ck_assert(SetName(h.name, "someone"));
    return EncodeMsg(DSHM_MSG_HELLO, 0, h);
}

struct Fed {
    Status status;
    std::vector<Frame> frames;
};

// Feeds `bytes` in chunks of `chunk` bytes, draining Next() after each.
Fed FeedAll(FrameReader &r, const Bytes &bytes, size_t chunk = SIZE_MAX) {
    Fed out;
    for (size_t pos = 0; pos < bytes.size();) {
        const size_t n = std::min(chunk, bytes.size() - pos);
        r.Feed(bytes.data() + pos, n);
        pos += n;
        for (;;) {
            std::optional<Frame> f;
            out.status = r.Next(&f);
            if (!out.status.ok()) {
                return out;
            }
            if (!f) {
                break;
            }
            out.frames.push_back(std::move(*f));
        }
    }
    return out;
}

bool FdOpen(int fd) {
    return fcntl(fd, F_GETFD) != -1;
}

int NewFd() {
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    return fd;
}

// Readers for the three receiving ends, already past the HELLO.
struct Daemon {
    FrameReader r{Channel::kClient, Receiver::kDaemon, ClientRole::kUnknown};
    explicit Daemon(uint16_t role = DSHM_ROLE_CLIENT) {
        Fed f = FeedAll(r, Hello(role));
        ck_assert_msg(f.status.ok(), "%s", f.status.ToString().c_str());
        ck_assert_uint_eq(f.frames.size(), 1);
    }
};

struct Library {
    FrameReader r;
    explicit Library(ClientRole role) : r(Channel::kClient, Receiver::kClient, role) {
        Fed f = FeedAll(r, Hello(DSHM_ROLE_CLIENT, 0));
        ck_assert_msg(f.status.ok(), "%s", f.status.ToString().c_str());
    }
};

Bytes Challenge() {
    return EncodeMsg(DSHM_MSG_AUTH_CHALLENGE, 0, dshm_auth_challenge{});
}
Bytes Proof() {
    return EncodeMsg(DSHM_MSG_AUTH_PROOF, 0, dshm_auth_proof{});
}

// A peer stream past its handshake (HELLO, AUTH_CHALLENGE, AUTH_PROOF and
// the receiver's SetAuthenticated).
struct Peer {
    FrameReader r{Channel::kPeer, Receiver::kDaemon, ClientRole::kUnknown};
    Peer() {
        Fed f = FeedAll(r, Cat({Hello(DSHM_ROLE_PEER, 3), Challenge(), Proof()}));
        ck_assert_msg(f.status.ok(), "%s", f.status.ToString().c_str());
        ck_assert_uint_eq(f.frames.size(), 3);
        ck_assert(!r.authenticated());
        r.SetAuthenticated();
    }
};

// Asserts that `bytes` is rejected with E_PROTO (message containing `why`)
// and that the reader then stays failed.
void ExpectReject(FrameReader &r, const Bytes &bytes, const char *why,
                  dshm_status code = DSHM_E_PROTO) {
    Fed f = FeedAll(r, bytes);
    ck_assert_msg(!f.status.ok(), "accepted, expected '%s'", why);
    ck_assert_int_eq(f.status.code(), code);
    ck_assert_msg(f.status.message().find(why) != std::string::npos, "'%s' lacks '%s'",
                  f.status.message().c_str(), why);
    ck_assert(r.failed());
    std::optional<Frame> again;
    ck_assert_int_eq(r.Next(&again).code(), code);
    ck_assert(!again);
}

void ExpectAccept(FrameReader &r, const Bytes &bytes, uint16_t type) {
    Fed f = FeedAll(r, bytes);
    ck_assert_msg(f.status.ok(), "%s", f.status.ToString().c_str());
    ck_assert_uint_eq(f.frames.size(), 1);
    ck_assert_uint_eq(f.frames[0].hdr.type, type);
    ck_assert_uint_eq(f.frames[0].payload.size(), f.frames[0].hdr.len);
}

dshm_attach Attach(const char *seg) {
    dshm_attach a{};
    ck_assert(SetName(a.segment, seg));
    ck_assert(SetName(a.vm_name, "vm1"));
    return a;
}

dshm_p_lock PLock(uint32_t lock, uint32_t host, uint32_t status = 0) {
    dshm_p_lock l{};
    ck_assert(SetName(l.segment, "seg0"));
    l.lock_id = lock;
    l.host_id = host;
    l.client_id = 7;
    l.status = status;
    return l;
}

Bytes PageMsg(uint16_t type, uint32_t status, bool with_data) {
    dshm_page p{};
    ck_assert(SetName(p.segment, "seg0"));
    p.page = 5;
    p.status = status;
    Bytes data(DSHM_PAGE_SIZE, 0xcd);
    return with_data ? EncodeMsg(type, 1, p, data.data(), data.size()) : EncodeMsg(type, 1, p);
}

Bytes PageList(uint16_t type, uint32_t count, size_t npages) {
    dshm_pagelist pl{};
    ck_assert(SetName(pl.segment, "seg0"));
    pl.count = count;
    std::vector<uint32_t> pages(npages, 9);
    return EncodeMsg(type, 1, pl, pages.data(), pages.size() * 4);
}

Bytes Writeback(uint16_t enc, const Bytes &diff, uint16_t type = DSHM_MSG_WRITEBACK) {
    dshm_writeback w{};
    ck_assert(SetName(w.segment, "seg0"));
    w.page = 3;
    w.encoding = enc;
    return EncodeMsg(type, 1, w, diff.data(), diff.size());
}

Bytes LockReply(uint16_t type, uint32_t lock, uint32_t status) {
    dshm_lock_reply r{};
    r.lock_id = lock;
    r.status = status;
    return EncodeMsg(type, 1, r);
}

Bytes LockReq(uint16_t type, uint32_t lock, uint32_t flags = 0) {
    dshm_lock_req q{};
    q.lock_id = lock;
    q.flags = flags;
    return EncodeMsg(type, 1, q);
}

Bytes ErrorMsg(uint32_t status, size_t text_len) {
    dshm_error e{};
    e.status = status;
    std::string text(text_len, 'x');
    return EncodeMsg(DSHM_MSG_ERROR, 1, e, text.data(), text.size());
}

dshm_attached Attached() {
    dshm_attached a{};
    a.size = 1 << 20;
    a.page_size = DSHM_PAGE_SIZE;
    a.nlocks = DSHM_MAX_LOCKS;
    a.client_id = 4;
    a.owner_host = 2;
    return a;
}

}  // namespace

// ------------------------------------------------------------- accepted

START_TEST(client_session_any_chunking) {
    dshm_uffd u{};
    u.base = 0x7f0000000000;
    u.length = 1 << 20;
    dshm_attach a = Attach("vm-shared_1.x");
    const Bytes hello = Hello(DSHM_ROLE_CLIENT);
    const Bytes rest = Cat({EncodeMsg(DSHM_MSG_ATTACH, 1, a), LockReq(DSHM_MSG_ACQUIRE, 5),
                            LockReq(DSHM_MSG_ACQUIRE, 999), LockReq(DSHM_MSG_RELEASE, 5),
                            EncodeEmpty(DSHM_MSG_DETACH, 9), ErrorMsg(DSHM_E_INTERNAL, 10)});
    for (size_t chunk : {size_t{1}, size_t{3}, size_t{16}, size_t{17}, size_t{1000}}) {
        FrameReader r(Channel::kClient, Receiver::kDaemon, ClientRole::kUnknown);
        ck_assert(r.role() == ClientRole::kUnknown);
        Fed f = FeedAll(r, hello, chunk);
        ck_assert(f.status.ok());
        ck_assert(r.role() == ClientRole::kClient);
        ck_assert(r.hello_seen());
        // UFFD with its fd attached to its first byte.
        const int fd = NewFd();
        r.AddFds(std::span<const int>(&fd, 1));
        Fed g = FeedAll(r, EncodeMsg(DSHM_MSG_UFFD, 2, u), chunk);
        ck_assert_msg(g.status.ok(), "%s", g.status.ToString().c_str());
        ck_assert_uint_eq(g.frames.size(), 1);
        ck_assert_uint_eq(g.frames[0].fds.size(), 1);
        ck_assert_int_eq(g.frames[0].fds[0], fd);
        ck_assert_uint_eq(g.frames[0].Fixed<dshm_uffd>().length, 1 << 20);
        ck_assert_int_eq(g.frames[0].TakeFd(), fd);
        ck_assert(FdOpen(fd));
        close(fd);

        Fed h = FeedAll(r, rest, chunk);
        ck_assert_msg(h.status.ok(), "%s", h.status.ToString().c_str());
        ck_assert_uint_eq(h.frames.size(), 6);
        ck_assert_uint_eq(h.frames[0].hdr.type, DSHM_MSG_ATTACH);
        ck_assert(std::string(dshm::NameOf(h.frames[0].Fixed<dshm_attach>().segment)) ==
                  "vm-shared_1.x");
        ck_assert_uint_eq(h.frames[2].Fixed<dshm_lock_req>().lock_id, 999);  // E_BAD_LOCK later
        ck_assert_uint_eq(h.frames[4].hdr.type, DSHM_MSG_DETACH);
        ck_assert_uint_eq(h.frames[4].hdr.tag, 9);
        ck_assert_uint_eq(h.frames[5].Extra(sizeof(dshm_error)).size(), 10);
        ck_assert_uint_eq(r.buffered(), 0);
    }
}
END_TEST

START_TEST(partial_frame_waits) {
    Daemon d;
    const Bytes m = LockReq(DSHM_MSG_ACQUIRE, 1);
    d.r.Feed(m.data(), m.size() - 1);
    std::optional<Frame> f;
    ck_assert(d.r.Next(&f).ok());
    ck_assert(!f);
    ck_assert_uint_eq(d.r.buffered(), m.size() - 1);
    d.r.Feed(m.data() + m.size() - 1, 1);
    ck_assert(d.r.Next(&f).ok());
    ck_assert(f.has_value());
    ck_assert(d.r.Next(&f).ok());
    ck_assert(!f);
}
END_TEST

START_TEST(ctl_role) {
    Daemon d(DSHM_ROLE_CTL);
    ck_assert(d.r.role() == ClientRole::kCtl);
    dshm_ctl_query q{};
    q.what = DSHM_CTL_PEERS;
    ExpectAccept(d.r, EncodeMsg(DSHM_MSG_CTL_QUERY, 1, q), DSHM_MSG_CTL_QUERY);
    ExpectReject(d.r, LockReq(DSHM_MSG_ACQUIRE, 1), "not allowed");

    Daemon c(DSHM_ROLE_CLIENT);
    ExpectReject(c.r, EncodeMsg(DSHM_MSG_CTL_QUERY, 1, q), "not allowed");
}
END_TEST

START_TEST(library_side) {
    Library lib(ClientRole::kClient);
    const int fd = NewFd();
    lib.r.AddFds(std::span<const int>(&fd, 1));
    Fed f = FeedAll(
        lib.r, Cat({EncodeMsg(DSHM_MSG_ATTACHED, 1, Attached()), EncodeEmpty(DSHM_MSG_READY, 2),
                    LockReply(DSHM_MSG_GRANTED, 3, 0), LockReply(DSHM_MSG_RELEASED, 3, 0),
                    LockReply(DSHM_MSG_LOCK_FAILED, 4000, DSHM_E_BAD_LOCK)}));
    ck_assert_msg(f.status.ok(), "%s", f.status.ToString().c_str());
    ck_assert_uint_eq(f.frames.size(), 5);
    ck_assert_uint_eq(f.frames[0].fds.size(), 1);
    f.frames.clear();  // ~Frame closes the memfd nobody took
    ck_assert(!FdOpen(fd));
    ExpectReject(lib.r, dshm::Encode(DSHM_MSG_CTL_REPLY, 1, "{}", 2), "not allowed");

    Library ctl(ClientRole::kCtl);
    std::string json(100000, ' ');
    ExpectAccept(ctl.r, dshm::Encode(DSHM_MSG_CTL_REPLY, 1, json.data(), json.size()),
                 DSHM_MSG_CTL_REPLY);
    ExpectReject(ctl.r, LockReply(DSHM_MSG_GRANTED, 3, 0), "not allowed");
}
END_TEST

START_TEST(peer_types) {
    Peer p;
    dshm_fetch fe{};
    ck_assert(SetName(fe.segment, "seg0"));
    fe.flags = DSHM_FETCH_WRITE;
    dshm_p_release rel{};
    ck_assert(SetName(rel.segment, "seg0"));
    rel.lock_id = 255;
    rel.host_id = 63;
    rel.npages = 2;
    dshm_p_release_ack ack{};
    ck_assert(SetName(ack.segment, "seg0"));
    ack.status = DSHM_E_OWNER_LOST;
    Bytes page(DSHM_PAGE_SIZE, 1), twin(DSHM_PAGE_SIZE, 0), runs, mask, full;
    page[7] = 0;
    uint16_t full_enc = dshm::EncodeDiff(page.data(), twin.data(), &full);  // RUNS: 2 runs
    ck_assert_uint_eq(full_enc, DSHM_ENC_RUNS);
    page.assign(DSHM_PAGE_SIZE, 0);
    page[100] = 1;
    ck_assert_uint_eq(dshm::EncodeDiff(page.data(), twin.data(), &runs), DSHM_ENC_RUNS);
    for (size_t i = 0; i < DSHM_PAGE_SIZE; i += 3) {
        page[i] = 2;
    }
    ck_assert_uint_eq(dshm::EncodeDiff(page.data(), twin.data(), &mask), DSHM_ENC_MASK);
    page.assign(DSHM_PAGE_SIZE, 9);
    ck_assert_uint_eq(dshm::EncodeDiff(page.data(), twin.data(), &full), DSHM_ENC_FULL);

    const Bytes all = Cat({
        EncodeMsg(DSHM_MSG_FETCH, 1, fe),
        PageMsg(DSHM_MSG_PAGE, 0, true),
        PageMsg(DSHM_MSG_PAGE, DSHM_E_NO_SEGMENT, false),
        EncodeMsg(DSHM_MSG_P_ACQUIRE, 1, PLock(0, 0)),
        EncodeMsg(DSHM_MSG_P_GRANT, 1, PLock(255, 63)),
        EncodeMsg(DSHM_MSG_P_GRANT, 1, PLock(1, 1, DSHM_E_OWNER_LOST)),
        Writeback(DSHM_ENC_RUNS, runs),
        Writeback(DSHM_ENC_MASK, mask),
        Writeback(DSHM_ENC_FULL, full),
        EncodeMsg(DSHM_MSG_P_RELEASE, 1, rel),
        EncodeMsg(DSHM_MSG_P_RELEASE_ACK, 1, ack),
        PageList(DSHM_MSG_INVALIDATE, 1, 1),
        PageList(DSHM_MSG_INVALIDATE, DSHM_MAX_INVAL_PAGES, DSHM_MAX_INVAL_PAGES),
        PageList(DSHM_MSG_INVAL_ACK, 0, 0),
        PageList(DSHM_MSG_EXCL_GRANT, 1, 1),
        PageList(DSHM_MSG_EXCL_GRANT, DSHM_MAX_INVAL_PAGES, DSHM_MAX_INVAL_PAGES),
        PageList(DSHM_MSG_EXCL_REVOKE, 1, 1),
        PageList(DSHM_MSG_EXCL_REVOKED, 2, 2),
        Writeback(DSHM_ENC_RUNS, runs, DSHM_MSG_UPDATE),
        PageMsg(DSHM_MSG_UPDATE_ACK, 0, false),
        EncodeMsg(DSHM_MSG_CLIENT_GONE, 1, PLock(123456, 5)),  // lock_id ignored
        ErrorMsg(DSHM_E_NOT_OWNER, DSHM_ERROR_TEXT_MAX),
    });
    Fed f = FeedAll(p.r, all, 4000);
    ck_assert_msg(f.status.ok(), "%s", f.status.ToString().c_str());
    ck_assert_uint_eq(f.frames.size(), 22);
    ck_assert_uint_eq(f.frames[1].payload.size(), sizeof(dshm_page) + DSHM_PAGE_SIZE);
    ck_assert_uint_eq(f.frames[12].Fixed<dshm_pagelist>().count, DSHM_MAX_INVAL_PAGES);
}
END_TEST

// Prepare/Commit (a recv straight into the reader) yields the same frames
// as Feed, whatever the read sizes and however much of each read is used.
START_TEST(prepare_commit_like_feed) {
    std::mt19937_64 rng(7);
    Bytes runs, full;
    Bytes page(DSHM_PAGE_SIZE, 0), twin(DSHM_PAGE_SIZE, 0);
    page[100] = 1;
    ck_assert_uint_eq(dshm::EncodeDiff(page.data(), twin.data(), &runs), DSHM_ENC_RUNS);
    page.assign(DSHM_PAGE_SIZE, 9);
    ck_assert_uint_eq(dshm::EncodeDiff(page.data(), twin.data(), &full), DSHM_ENC_FULL);
    std::vector<Bytes> parts;
    for (int i = 0; i < 200; i++) {
        parts.push_back(i % 3 == 0 ? Writeback(DSHM_ENC_RUNS, runs)
                                   : Writeback(DSHM_ENC_FULL, full));
    }
    parts.push_back(EncodeMsg(DSHM_MSG_P_ACQUIRE, 1, PLock(0, 0)));
    Bytes all;
    for (const Bytes &b : parts) {
        all.insert(all.end(), b.begin(), b.end());
    }
    Peer ref;
    Fed want = FeedAll(ref.r, all);
    ck_assert(want.status.ok());
    ck_assert_uint_eq(want.frames.size(), 201);
    for (size_t max : {size_t{1}, size_t{100}, size_t{4096}, size_t{65536}, size_t{1} << 20}) {
        Peer p;
        std::vector<Frame> got;
        for (size_t pos = 0; pos < all.size();) {
            uint8_t *buf = p.r.Prepare(max);
            // A short read now and then, as recv gives them.
            const size_t n = std::min({max, all.size() - pos, size_t{1} + rng() % max});
            memcpy(buf, all.data() + pos, n);
            p.r.Commit(n);
            pos += n;
            for (;;) {
                std::optional<Frame> f;
                ck_assert(p.r.Next(&f).ok());
                if (!f) {
                    break;
                }
                got.push_back(std::move(*f));
            }
            ck_assert_uint_le(p.r.buffered(), max + 16 + sizeof(dshm_writeback) + DSHM_PAGE_SIZE);
        }
        ck_assert_uint_eq(got.size(), want.frames.size());
        for (size_t i = 0; i < got.size(); i++) {
            ck_assert_uint_eq(got[i].hdr.type, want.frames[i].hdr.type);
            ck_assert(got[i].payload == want.frames[i].payload);
        }
        ck_assert_uint_eq(p.r.buffered(), 0);
    }
}
END_TEST

// ------------------------------------------------------------- rejected

// The peer handshake (frame.h): after HELLO exactly AUTH_CHALLENGE, then
// AUTH_PROOF, then nothing until SetAuthenticated; ERROR at any point.  A
// FETCH (a page), a P_ACQUIRE (a lock), an OWN_MOVED (ownership) or a
// WRITEBACK before it is refused with E_AUTH at its header.
START_TEST(peer_handshake_order) {
    const Bytes hello = Hello(DSHM_ROLE_PEER, 3);
    dshm_fetch fe{};
    ck_assert(SetName(fe.segment, "s"));
    const Bytes fetch = EncodeMsg(DSHM_MSG_FETCH, 1, fe);
    for (const Bytes &early : {fetch, EncodeMsg(DSHM_MSG_P_ACQUIRE, 1, PLock(0, 0)),
                               EncodeMsg(DSHM_MSG_OWN_MOVED, 1, dshm_seg_note{})}) {
        for (const Bytes &before : {hello, Cat({hello, Challenge()}),
                                    Cat({hello, Challenge(), Proof()})}) {
            FrameReader r(Channel::kPeer, Receiver::kDaemon, ClientRole::kUnknown);
            Fed f = FeedAll(r, before);
            ck_assert_msg(f.status.ok(), "%s", f.status.ToString().c_str());
            ExpectReject(r, early, "before authentication", DSHM_E_AUTH);
        }
    }
    {
        // A header announcing a huge WRITEBACK is refused without its payload.
        FrameReader r(Channel::kPeer, Receiver::kDaemon, ClientRole::kUnknown);
        Bytes wb = EncodeMsg(DSHM_MSG_WRITEBACK, 1, dshm_writeback{});
        ExpectReject(r, Cat({hello, Bytes(wb.begin(), wb.begin() + 16)}), "before authentication",
                     DSHM_E_AUTH);
    }
    {
        // Out of order: a proof before the challenge, a second challenge.
        FrameReader r(Channel::kPeer, Receiver::kDaemon, ClientRole::kUnknown);
        ExpectReject(r, Cat({hello, Proof()}), "AUTH_PROOF before authentication", DSHM_E_AUTH);
        FrameReader r2(Channel::kPeer, Receiver::kDaemon, ClientRole::kUnknown);
        ExpectReject(r2, Cat({hello, Challenge(), Challenge()}), "expected AUTH_PROOF",
                     DSHM_E_AUTH);
    }
    {
        // ERROR during the handshake; after it, no second handshake.
        FrameReader r(Channel::kPeer, Receiver::kDaemon, ClientRole::kUnknown);
        Fed f = FeedAll(r, Cat({hello, Challenge(), ErrorMsg(DSHM_E_AUTH, 0)}));
        ck_assert(f.status.ok());
        ck_assert_uint_eq(f.frames.size(), 3);
        Peer p;
        ck_assert(p.r.authenticated());
        Fed g = FeedAll(p.r, fetch);
        ck_assert(g.status.ok());
        ck_assert_uint_eq(g.frames.size(), 1);
        ExpectReject(p.r, Challenge(), "after authentication");
    }
}
END_TEST

START_TEST(sequencing_and_roles) {
    {
        FrameReader r(Channel::kClient, Receiver::kDaemon, ClientRole::kUnknown);
        ExpectReject(r, EncodeMsg(DSHM_MSG_ATTACH, 1, Attach("s")), "before HELLO");
    }
    {
        FrameReader r(Channel::kPeer, Receiver::kDaemon, ClientRole::kUnknown);
        ExpectReject(r, EncodeMsg(DSHM_MSG_FETCH, 1, dshm_fetch{}), "before HELLO");
    }
    {
        // An ERROR may come first (a refused HELLO); then only a HELLO.
        FrameReader r(Channel::kClient, Receiver::kClient, ClientRole::kClient);
        Fed f = FeedAll(r, ErrorMsg(DSHM_E_VERSION, 5));
        ck_assert(f.status.ok());
        ck_assert(!r.hello_seen());
    }
    Daemon d;
    ExpectReject(d.r, Hello(DSHM_ROLE_CLIENT), "second HELLO");
    {
        FrameReader r(Channel::kClient, Receiver::kDaemon, ClientRole::kUnknown);
        ExpectReject(r, Hello(DSHM_ROLE_PEER, 0, DSHM_PROTO_VERSION), "role");
    }
    {
        FrameReader r(Channel::kClient, Receiver::kDaemon, ClientRole::kUnknown);
        ExpectReject(r, Hello(DSHM_ROLE_CLIENT, 3), "host_id");
    }
    {
        FrameReader r(Channel::kPeer, Receiver::kDaemon, ClientRole::kUnknown);
        ExpectReject(r, Hello(DSHM_ROLE_CLIENT, 1, DSHM_PEER_VERSION), "not PEER");
    }
    {
        FrameReader r(Channel::kPeer, Receiver::kDaemon, ClientRole::kUnknown);
        ExpectReject(r, Hello(DSHM_ROLE_PEER, DSHM_MAX_HOSTS), "host id");
    }
    {
        FrameReader r(Channel::kClient, Receiver::kClient, ClientRole::kClient);
        ExpectReject(r, Hello(9), "unknown role");
    }
    {
        FrameReader r(Channel::kPeer, Receiver::kDaemon, ClientRole::kUnknown);
        const std::string other = "version " + std::to_string(DSHM_PEER_VERSION + 1);
        ExpectReject(r, Hello(DSHM_ROLE_PEER, 1, DSHM_PEER_VERSION + 1), other.c_str(),
                     DSHM_E_VERSION);
    }
    {
        // A peer of version 2 (no authentication) is refused at its HELLO.
        FrameReader r(Channel::kPeer, Receiver::kDaemon, ClientRole::kUnknown);
        ExpectReject(r, Hello(DSHM_ROLE_PEER, 1, DSHM_PROTO_VERSION), "version 2",
                     DSHM_E_VERSION);
    }
    {
        FrameReader r(Channel::kPeer, Receiver::kDaemon, ClientRole::kUnknown);
        Bytes h = Hello(DSHM_ROLE_PEER, 1);
        memset(h.data() + 16 + 16, 'a', DSHM_VMNAME_LEN);  // name without NUL
        ExpectReject(r, h, "NUL");
    }
    // Types of the other direction or channel.
    Peer p;
    ExpectReject(p.r, LockReq(DSHM_MSG_ACQUIRE, 1), "not allowed");
    Daemon d2;
    ExpectReject(d2.r, EncodeMsg(DSHM_MSG_P_ACQUIRE, 1, PLock(0, 0)), "not allowed");
    Daemon d3;
    ExpectReject(d3.r, LockReply(DSHM_MSG_GRANTED, 1, 0), "not allowed");
    Library l(ClientRole::kClient);
    ExpectReject(l.r, EncodeMsg(DSHM_MSG_ATTACH, 1, Attach("s")), "not allowed");
}
END_TEST

START_TEST(header_errors) {
    {
        Daemon d;
        Bytes m = LockReq(DSHM_MSG_ACQUIRE, 1);
        m[0] ^= 1;
        ExpectReject(d.r, m, "bad magic");
    }
    {
        Daemon d;
        Bytes m = LockReq(DSHM_MSG_ACQUIRE, 1);
        m[4] = 0x99;
        ExpectReject(d.r, m, "unknown type UNKNOWN(0x0099)");
    }
    {
        Daemon d;
        Bytes m = LockReq(DSHM_MSG_ACQUIRE, 1);
        m[6] = 1;
        ExpectReject(d.r, m, "flags");
    }
    {
        // A huge length is rejected from the header alone.
        Peer p;
        dshm_hdr h{DSHM_MAGIC, DSHM_MSG_WRITEBACK, 0, 0xfffffff0u, 1};
        p.r.Feed(reinterpret_cast<const uint8_t *>(&h), sizeof h);
        std::optional<Frame> f;
        Status s = p.r.Next(&f);
        ck_assert_int_eq(s.code(), DSHM_E_PROTO);
        ck_assert(s.message().find("WRITEBACK payload of 4294967280 bytes") != std::string::npos);
        ck_assert_uint_eq(p.r.buffered(), 0);
    }
    {
        Library ctl(ClientRole::kCtl);
        dshm_hdr h{DSHM_MAGIC, DSHM_MSG_CTL_REPLY, 0, DSHM_MAX_PAYLOAD + 1, 1};
        ExpectReject(ctl.r,
                     Bytes(reinterpret_cast<uint8_t *>(&h), reinterpret_cast<uint8_t *>(&h + 1)),
                     "payload of 1048577 bytes");
    }
    struct {
        Bytes msg;
        const char *why;
    } cases[] = {
        {EncodeMsg(DSHM_MSG_ACQUIRE, 1, uint32_t{1}), "ACQUIRE payload of 4 bytes, expected 8..8"},
        {EncodeMsg(DSHM_MSG_DETACH, 1, uint32_t{1}), "DETACH payload of 4 bytes"},
        {dshm::Encode(DSHM_MSG_ATTACH, 1, Bytes(113).data(), 113), "ATTACH payload of 113"},
        {ErrorMsg(DSHM_E_PROTO, DSHM_ERROR_TEXT_MAX + 1), "ERROR payload of 1033"},
    };
    for (auto &c : cases) {
        Daemon d;
        ExpectReject(d.r, c.msg, c.why);
    }
}
END_TEST

START_TEST(client_payload_errors) {
    dshm_attach a = Attach("seg");
    a.segment[DSHM_SEGNAME_LEN - 1] = 'x';
    memset(a.segment, 'a', DSHM_SEGNAME_LEN);
    dshm_attach b = Attach("seg");
    memset(b.vm_name, 'v', DSHM_VMNAME_LEN);
    dshm_attach bad_chars = Attach("seg");
    memcpy(bad_chars.segment, "a/b", 4);
    dshm_attach empty = Attach("seg");
    memset(empty.segment, 0, DSHM_SEGNAME_LEN);
    dshm_attach dotdot = Attach("..");
    dshm_uffd u1{0x1001, 4096}, u2{0x1000, 0}, u3{0x1000, 100}, u4{~0ull & ~0xfffull, 0x2000};
    dshm_ctl_query q{9, 0};
    struct {
        uint16_t role;
        Bytes msg;
        const char *why;
        bool fd;
    } cases[] = {
        {DSHM_ROLE_CLIENT, EncodeMsg(DSHM_MSG_ATTACH, 1, a), "segment name not NUL", false},
        {DSHM_ROLE_CLIENT, EncodeMsg(DSHM_MSG_ATTACH, 1, b), "vm_name not NUL", false},
        {DSHM_ROLE_CLIENT, EncodeMsg(DSHM_MSG_ATTACH, 1, bad_chars), "invalid segment", false},
        {DSHM_ROLE_CLIENT, EncodeMsg(DSHM_MSG_ATTACH, 1, empty), "invalid segment", false},
        {DSHM_ROLE_CLIENT, EncodeMsg(DSHM_MSG_ATTACH, 1, dotdot), "invalid segment", false},
        {DSHM_ROLE_CLIENT, EncodeMsg(DSHM_MSG_UFFD, 1, u1), "bad range", true},
        {DSHM_ROLE_CLIENT, EncodeMsg(DSHM_MSG_UFFD, 1, u2), "bad range", true},
        {DSHM_ROLE_CLIENT, EncodeMsg(DSHM_MSG_UFFD, 1, u3), "bad range", true},
        {DSHM_ROLE_CLIENT, EncodeMsg(DSHM_MSG_UFFD, 1, u4), "bad range", true},
        {DSHM_ROLE_CLIENT, LockReq(DSHM_MSG_RELEASE, 1, 4), "flags", false},
        {DSHM_ROLE_CLIENT, ErrorMsg(0, 3), "status 0", false},
        {DSHM_ROLE_CLIENT, ErrorMsg(200, 3), "unknown status 200", false},
        {DSHM_ROLE_CTL, EncodeMsg(DSHM_MSG_CTL_QUERY, 1, q), "unknown query", false},
    };
    for (auto &c : cases) {
        Daemon d(c.role);
        int fd = -1;
        if (c.fd) {
            fd = NewFd();
            d.r.AddFds(std::span<const int>(&fd, 1));
        }
        ExpectReject(d.r, c.msg, c.why);
        if (c.fd) {
            ck_assert(!FdOpen(fd));
        }
    }

    dshm_attached z = Attached(), ps = Attached(), nl = Attached(), oh = Attached();
    z.size = 4097;
    ps.page_size = 8192;
    nl.nlocks = 257;
    oh.owner_host = 64;
    struct {
        Bytes msg;
        const char *why;
    } lib_cases[] = {
        {EncodeMsg(DSHM_MSG_ATTACHED, 1, z), "segment size"},
        {EncodeMsg(DSHM_MSG_ATTACHED, 1, ps), "page size"},
        {EncodeMsg(DSHM_MSG_ATTACHED, 1, nl), "lock count"},
        {EncodeMsg(DSHM_MSG_ATTACHED, 1, oh), "host id 64"},
        {LockReply(DSHM_MSG_GRANTED, 256, 0), "lock id 256"},
        {LockReply(DSHM_MSG_RELEASED, 1, DSHM_E_PROTO), "where 0 is required"},
        {LockReply(DSHM_MSG_LOCK_FAILED, 1, 0), "status 0 where an error"},
        {LockReply(DSHM_MSG_LOCK_FAILED, 1, DSHM_E_AUTH + 1), "unknown status 16"},
    };
    for (auto &c : lib_cases) {
        Library l(ClientRole::kClient);
        if (c.msg[4] == DSHM_MSG_ATTACHED) {
            const int fd = NewFd();
            l.r.AddFds(std::span<const int>(&fd, 1));
        }
        ExpectReject(l.r, c.msg, c.why);
    }
}
END_TEST

START_TEST(peer_payload_errors) {
    dshm_fetch fe{};
    ck_assert(SetName(fe.segment, "seg0"));
    fe.flags = 2;
    dshm_fetch noname{};
    dshm_p_release rel{};
    ck_assert(SetName(rel.segment, "seg0"));
    rel.host_id = 64;
    dshm_p_release_ack ack{};
    ck_assert(SetName(ack.segment, "seg0"));
    ack.lock_id = 256;
    Bytes mask(512 + 2, 0);
    mask[0] = 0x07;             // 3 bits, 2 data bytes
    Bytes runs = {4, 0, 0, 0};  // zero-length run
    Bytes inval_bad = PageList(DSHM_MSG_INVALIDATE, 3, 2);
    Bytes long_runs;  // 922 one-byte runs at even offsets: valid, 4610 bytes
    for (uint16_t off = 0; long_runs.size() <= dshm::kMaxEncodedDiff; off += 2)
        long_runs.insert(long_runs.end(), {uint8_t(off), uint8_t(off >> 8), 1, 0, 0xee});
    ck_assert(dshm::ValidateDiff(DSHM_ENC_RUNS, long_runs.data(), long_runs.size()).ok());
    struct {
        Bytes msg;
        const char *why;
    } cases[] = {
        {EncodeMsg(DSHM_MSG_FETCH, 1, fe), "unknown flags"},
        {EncodeMsg(DSHM_MSG_FETCH, 1, noname), "invalid segment"},
        {PageMsg(DSHM_MSG_PAGE, 0, false), "length 40 with status 0, expected 4136"},
        {PageMsg(DSHM_MSG_PAGE, DSHM_E_NO_SEGMENT, true), "expected 40"},
        {PageMsg(DSHM_MSG_PAGE, 99, false), "unknown status 99"},
        {Writeback(DSHM_ENC_FULL, Bytes(4095), DSHM_MSG_UPDATE), "FULL diff of 4095 bytes"},
        {PageMsg(DSHM_MSG_UPDATE, 0, false), "UPDATE payload of 40"},
        {PageMsg(DSHM_MSG_UPDATE_ACK, 0, true), "UPDATE_ACK payload of 4136"},
        {EncodeMsg(DSHM_MSG_P_ACQUIRE, 1, PLock(256, 1)), "lock id 256"},
        {EncodeMsg(DSHM_MSG_P_ACQUIRE, 1, PLock(1, 64)), "host id 64"},
        {EncodeMsg(DSHM_MSG_P_ACQUIRE, 1, PLock(1, 1, DSHM_E_PROTO)), "where 0 is required"},
        {EncodeMsg(DSHM_MSG_P_GRANT, 1, PLock(1, 1, 50)), "unknown status 50"},
        {EncodeMsg(DSHM_MSG_CLIENT_GONE, 1, PLock(1, 99)), "host id 99"},
        {EncodeMsg(DSHM_MSG_P_RELEASE, 1, rel), "host id 64"},
        {EncodeMsg(DSHM_MSG_P_RELEASE_ACK, 1, ack), "lock id 256"},
        {Writeback(DSHM_ENC_MASK, mask), "mask has 3 bits set but 2 data bytes"},
        {Writeback(DSHM_ENC_RUNS, runs), "INVALID"},  // too short: header-time bound
        {Writeback(DSHM_ENC_RUNS, Cat({runs, Bytes{1}})), "zero-length run"},
        {Writeback(DSHM_ENC_FULL, Bytes(4095)), "FULL diff of 4095 bytes"},
        {Writeback(7, Bytes(100)), "unknown diff encoding 7"},
        {Writeback(DSHM_ENC_RUNS, Bytes(dshm::kRunsMaxSize + 1)), "WRITEBACK payload of"},
        // A valid RUNS diff longer than the MASK diff of the same bytes: no
        // encoder sends it (the smallest wins); refused by its length, so
        // that buffered write-backs stay near a page a page.
        {Writeback(DSHM_ENC_RUNS, long_runs), "WRITEBACK payload of"},
        {Writeback(DSHM_ENC_RUNS, long_runs, DSHM_MSG_UPDATE), "UPDATE payload of"},
        {inval_bad, "count 3 inconsistent with length 48"},
        {PageList(DSHM_MSG_INVALIDATE, 0, 0), "INVALIDATE payload of 40"},
        {PageList(DSHM_MSG_EXCL_GRANT, 0, 0), "EXCL_GRANT payload of 40"},
        {PageList(DSHM_MSG_EXCL_REVOKE, 2, 1), "inconsistent"},
        {PageList(DSHM_MSG_EXCL_REVOKED, DSHM_MAX_INVAL_PAGES + 1, DSHM_MAX_INVAL_PAGES + 1),
         "EXCL_REVOKED"},
        {PageList(DSHM_MSG_INVALIDATE, 0, 1), "count 0 inconsistent"},
        {PageList(DSHM_MSG_INVAL_ACK, DSHM_MAX_INVAL_PAGES + 1, DSHM_MAX_INVAL_PAGES + 1),
         "INVAL_ACK payload of 4140"},
        {PageList(DSHM_MSG_INVAL_ACK, 1u << 30, 1), "inconsistent"},
        {dshm::Encode(DSHM_MSG_INVAL_ACK, 1, Bytes(42).data(), 42), "inconsistent"},
    };
    for (auto &c : cases) {
        Peer p;
        // "INVALID": any rejection will do (checked via the payload bound).
        ExpectReject(p.r, c.msg, strcmp(c.why, "INVALID") == 0 ? "WRITEBACK payload" : c.why);
    }
}
END_TEST

// ------------------------------------------------------------------ fds

START_TEST(fd_rules) {
    dshm_uffd u{0x10000, 0x10000};
    {
        // A stray fd on a type that carries none: rejected and closed.
        Daemon d;
        const int fd = NewFd();
        d.r.AddFds(std::span<const int>(&fd, 1));
        ExpectReject(d.r, LockReq(DSHM_MSG_ACQUIRE, 1), "ACQUIRE with 1 fds, expected 0");
        ck_assert(!FdOpen(fd));
    }
    {
        Daemon d;
        ExpectReject(d.r, EncodeMsg(DSHM_MSG_UFFD, 1, u), "UFFD with 0 fds, expected 1");
    }
    {
        Daemon d;
        const int fds[2] = {NewFd(), NewFd()};
        d.r.AddFds(fds);
        ExpectReject(d.r, EncodeMsg(DSHM_MSG_UFFD, 1, u), "UFFD with 2 fds");
        ck_assert(!FdOpen(fds[0]));
        ck_assert(!FdOpen(fds[1]));
    }
    {
        // The fd arrives with a later byte of the UFFD message, not its first.
        Daemon d;
        const Bytes m = EncodeMsg(DSHM_MSG_UFFD, 1, u);
        d.r.Feed(m.data(), 10);
        const int fd = NewFd();
        d.r.AddFds(std::span<const int>(&fd, 1));
        ExpectReject(d.r, Bytes(m.begin() + 10, m.end()), "UFFD with 0 fds");
        ck_assert(!FdOpen(fd));
    }
    {
        // An fd inside an ACQUIRE that precedes a UFFD.
        Daemon d;
        const Bytes a = LockReq(DSHM_MSG_ACQUIRE, 1);
        d.r.Feed(a.data(), 20);
        const int fd = NewFd();
        d.r.AddFds(std::span<const int>(&fd, 1));
        ExpectReject(d.r, Cat({Bytes(a.begin() + 20, a.end()), EncodeMsg(DSHM_MSG_UFFD, 1, u)}),
                     "fd attached inside the message");
        ck_assert(!FdOpen(fd));
    }
    {
        // Fds after an error are closed at once.
        Daemon d;
        ExpectReject(d.r, Bytes(16, 0), "bad magic");
        const int fd = NewFd();
        d.r.AddFds(std::span<const int>(&fd, 1));
        ck_assert(!FdOpen(fd));
    }
    {
        // Fds of a message not yet complete are closed with the reader.
        const int fd = NewFd();
        {
            Daemon d;
            d.r.AddFds(std::span<const int>(&fd, 1));
            const Bytes m = EncodeMsg(DSHM_MSG_UFFD, 1, u);
            Fed f = FeedAll(d.r, Bytes(m.begin(), m.begin() + 20));
            ck_assert(f.status.ok());
            ck_assert(f.frames.empty());
            ck_assert(FdOpen(fd));
        }
        ck_assert(!FdOpen(fd));
    }
    {
        // Two fd-carrying messages back to back, fds added per message.
        Daemon d;
        const int f1 = NewFd(), f2 = NewFd();
        d.r.AddFds(std::span<const int>(&f1, 1));
        const Bytes m = EncodeMsg(DSHM_MSG_UFFD, 1, u);
        d.r.Feed(m.data(), m.size());
        d.r.AddFds(std::span<const int>(&f2, 1));
        Fed f = FeedAll(d.r, m);
        ck_assert_msg(f.status.ok(), "%s", f.status.ToString().c_str());
        ck_assert_uint_eq(f.frames.size(), 2);
        ck_assert_int_eq(f.frames[0].fds[0], f1);
        ck_assert_int_eq(f.frames[1].fds[0], f2);
        // Moving a frame moves fd ownership.
        Frame moved = std::move(f.frames[0]);
        ck_assert(f.frames[0].fds.empty());
        f.frames.clear();
        ck_assert(FdOpen(f1));
        ck_assert(!FdOpen(f2));
        moved = Frame();
        ck_assert(!FdOpen(f1));
    }
}
END_TEST

// -------------------------------------------------------------- helpers

START_TEST(names) {
    char seg[DSHM_SEGNAME_LEN];
    memset(seg, 'z', sizeof seg);
    ck_assert(SetName(seg, "abc"));
    ck_assert(dshm::NameOf(seg) == "abc");
    for (size_t i = 3; i < sizeof seg; i++) {
        ck_assert_int_eq(seg[i], 0);
    }
    ck_assert(SetName(seg, std::string(31, 'a')));
    ck_assert(!SetName(seg, std::string(32, 'b')));  // no room for the NUL
    ck_assert_uint_eq(dshm::NameOf(seg).size(), 31);
    ck_assert_int_eq(seg[0], 'a');  // untouched by the failed call
    ck_assert(!SetName(seg, std::string_view("a\0b", 3)));
    ck_assert(SetName(seg, ""));
    ck_assert(dshm::NameOf(seg).empty());
    char full[4] = {'a', 'b', 'c', 'd'};
    ck_assert_uint_eq(dshm::NameOf(full).size(), 4);

    ck_assert(dshm::IsValidSegmentName("a"));
    ck_assert(dshm::IsValidSegmentName("Seg-1_x.y"));
    ck_assert(dshm::IsValidSegmentName(std::string(31, 'q')));
    ck_assert(!dshm::IsValidSegmentName(""));
    ck_assert(!dshm::IsValidSegmentName(std::string(32, 'q')));
    ck_assert(!dshm::IsValidSegmentName("."));
    ck_assert(!dshm::IsValidSegmentName(".."));
    ck_assert(!dshm::IsValidSegmentName("a b"));
    ck_assert(!dshm::IsValidSegmentName("a/b"));
    ck_assert(!dshm::IsValidSegmentName("\xc3\xa9"));
}
END_TEST

START_TEST(encoding_helpers) {
    dshm_lock_req q{17, 0};
    Bytes m = EncodeMsg(DSHM_MSG_ACQUIRE, 0xabcdef, q);
    ck_assert_uint_eq(m.size(), 16 + 8);
    dshm_hdr h;
    memcpy(&h, m.data(), sizeof h);
    ck_assert_uint_eq(h.magic, DSHM_MAGIC);
    ck_assert_uint_eq(h.type, DSHM_MSG_ACQUIRE);
    ck_assert_uint_eq(h.flags, 0);
    ck_assert_uint_eq(h.len, 8);
    ck_assert_uint_eq(h.tag, 0xabcdef);
    ck_assert(memcmp(m.data(), "DSHM", 4) == 0);
    ck_assert_uint_eq(EncodeEmpty(DSHM_MSG_READY, 1).size(), 16);
    ck_assert(dshm::MsgTypeName(DSHM_MSG_P_RELEASE_ACK) == "P_RELEASE_ACK");
    ck_assert(dshm::MsgTypeName(0x1234) == "UNKNOWN(0x1234)");

    // EncodeError cuts long text at 1024 bytes without splitting UTF-8.
    std::string text(1023, 'a');
    text += "\xc3\xa9";  // 2-byte character straddling the limit
    text += "tail";
    Bytes e = dshm::EncodeError(5, Status::NotOwner(text), DSHM_MSG_FETCH);
    ck_assert_uint_eq(e.size(), 16 + 8 + 1023);
    Peer p;
    Fed f = FeedAll(p.r, e);
    ck_assert(f.status.ok());
    ck_assert_uint_eq(f.frames.size(), 1);
    const auto err = f.frames[0].Fixed<dshm_error>();
    ck_assert_uint_eq(err.status, DSHM_E_NOT_OWNER);
    ck_assert_uint_eq(err.ref_type, DSHM_MSG_FETCH);
    ck_assert_uint_eq(f.frames[0].hdr.tag, 5);
    ck_assert_uint_eq(dshm::EncodeError(1, Status::Proto("short"), 0).size(), 16 + 8 + 5);
}
END_TEST

START_TEST(random_garbage_never_crashes) {
    // Arbitrary bytes after a valid HELLO: the reader either waits or fails,
    // never yields an unvalidated frame or crashes (run under ASan/UBSan).
    uint64_t x = 88172645463325252ull;
    for (int iter = 0; iter < 2000; iter++) {
        Peer p;
        Bytes junk(1 + iter % 300);
        for (auto &b : junk) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b = static_cast<uint8_t>(x);
        }
        if (iter % 2 == 0 && junk.size() >= 16) {
            // Plausible header, random type in the peer range, random length.
            dshm_hdr h{DSHM_MAGIC, static_cast<uint16_t>(0x40 + x % 12), 0,
                       static_cast<uint32_t>(x >> 20) % 5000, 1};
            memcpy(junk.data(), &h, sizeof h);
        }
        Fed f = FeedAll(p.r, junk, 1 + iter % 7);
        for (const Frame &fr : f.frames) {
            ck_assert_uint_eq(fr.payload.size(), fr.hdr.len);
        }
    }
}
END_TEST

int main() {
    Suite *s = suite_create("hostd/frame");
    TCase *ok = NewTCase("accepted", 60);
    tcase_add_test(ok, client_session_any_chunking);
    tcase_add_test(ok, partial_frame_waits);
    tcase_add_test(ok, prepare_commit_like_feed);
    tcase_add_test(ok, ctl_role);
    tcase_add_test(ok, library_side);
    tcase_add_test(ok, peer_types);
    suite_add_tcase(s, ok);
    TCase *bad = NewTCase("rejected", 30);
    tcase_add_test(bad, sequencing_and_roles);
    tcase_add_test(bad, peer_handshake_order);
    tcase_add_test(bad, header_errors);
    tcase_add_test(bad, client_payload_errors);
    tcase_add_test(bad, peer_payload_errors);
    tcase_add_test(bad, fd_rules);
    suite_add_tcase(s, bad);
    TCase *misc = NewTCase("helpers", 60);
    tcase_add_test(misc, names);
    tcase_add_test(misc, encoding_helpers);
    tcase_add_test(misc, random_garbage_never_crashes);
    suite_add_tcase(s, misc);
    return RunSuite(s);
}
