// make_seeds: writes the seed corpora of the fuzz targets (fuzz/corpus/*/),
// valid inputs built with the encoders of hostd/frame.h from the structs of
// include/dshm/wire.h: every peer message type, every client message type,
// and short sequences (a release, an ownership move) in the harnesses'
// input formats (fuzz_peer.cc, fuzz_client.cc, fuzz_diff.cc).
//
//   make_seeds DIR   (DIR/fuzz_peer/..., DIR/fuzz_client/..., ...)
// Rerun it after a wire.h change (fuzz/README.md).
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "diff.h"
#include "frame.h"

using namespace dshm;

namespace {

using Bytes = std::vector<uint8_t>;
std::string g_dir;

void Put(const std::string &target, const std::string &name, const Bytes &b) {
    const std::string d = g_dir + "/" + target;
    mkdir(d.c_str(), 0755);
    const std::string path = d + "/" + name;
    FILE *f = fopen(path.c_str(), "wb");
    if (!f || fwrite(b.data(), 1, b.size(), f) != b.size() || fclose(f) != 0) {
        perror(path.c_str());
        exit(1);
    }
}

Bytes Cat(std::initializer_list<Bytes> parts) {
    Bytes out;
    for (const Bytes &p : parts)
        out.insert(out.end(), p.begin(), p.end());
    return out;
}

Bytes Flag(uint8_t f) {
    return Bytes{f};
}

template <typename T>
void Seg(T &m, const char *s) {
    SetName(m.segment, s);
}

// --- peer messages (fuzz_peer: flag byte 3 = HELLO by the harness, host 3 up) ---

Bytes Hello(uint16_t role, uint32_t host, const char *name) {
    dshm_hello h = {};
    h.version = role == DSHM_ROLE_PEER ? DSHM_PEER_VERSION : DSHM_PROTO_VERSION;
    h.role = role;
    h.host_id = host;
    h.incarnation = 1002;
    SetName(h.name, name);
    return EncodeMsg(DSHM_MSG_HELLO, 0, h);
}

// The authentication handshake after a peer's HELLO (protocol.md section
// 2.1): a challenge and a proof (which no daemon verifies: fuzz_frame takes
// it as verified, fuzz_peer's daemon refuses it).
Bytes Challenge(uint8_t fill) {
    dshm_auth_challenge c;
    memset(c.nonce, fill, sizeof c.nonce);
    return EncodeMsg(DSHM_MSG_AUTH_CHALLENGE, 0, c);
}
Bytes Proof(uint8_t fill) {
    dshm_auth_proof p;
    memset(p.mac, fill, sizeof p.mac);
    return EncodeMsg(DSHM_MSG_AUTH_PROOF, 0, p);
}

Bytes Fetch(const char *seg, uint32_t pg, uint32_t flags) {
    dshm_fetch m = {};
    Seg(m, seg);
    m.page = pg;
    m.flags = flags;
    return EncodeMsg(DSHM_MSG_FETCH, 7, m);
}

Bytes PageMsg(uint16_t type, const char *seg, uint32_t pg, uint32_t status) {
    dshm_page m = {};
    Seg(m, seg);
    m.page = pg;
    m.status = status;
    Bytes data(DSHM_PAGE_SIZE, 0x5a);
    if (type == DSHM_MSG_UPDATE_ACK || status != 0)
        return EncodeMsg(type, 7, m);
    return EncodeMsg(type, 7, m, data.data(), data.size());
}

Bytes PLock(uint16_t type, const char *seg, uint32_t lock, uint32_t host, uint32_t client,
            uint32_t status = 0) {
    dshm_p_lock m = {};
    Seg(m, seg);
    m.lock_id = lock;
    m.host_id = host;
    m.client_id = client;
    m.status = status;
    return EncodeMsg(type, 9, m);
}

Bytes Diff(uint16_t *enc) {
    uint8_t page[DSHM_PAGE_SIZE] = {}, twin[DSHM_PAGE_SIZE] = {};
    page[8] = 1;
    page[100] = 2;
    page[101] = 3;
    Bytes d;
    *enc = EncodeDiff(page, twin, &d);
    return d;
}

Bytes Writeback(uint16_t type, const char *seg, uint32_t pg) {
    dshm_writeback m = {};
    Seg(m, seg);
    m.page = pg;
    Bytes d = Diff(&m.encoding);
    return EncodeMsg(type, 11, m, d.data(), d.size());
}

Bytes PRelease(uint16_t type, const char *seg, uint32_t lock, uint32_t host, uint32_t client,
               uint32_t npages) {
    dshm_p_release m = {};
    Seg(m, seg);
    m.lock_id = lock;
    m.host_id = host;
    m.client_id = client;
    m.npages = npages;
    return EncodeMsg(type, 12, m);
}

Bytes ReleaseAck(uint16_t type, const char *seg, uint32_t lock, uint32_t client, uint32_t st) {
    dshm_p_release_ack m = {};
    Seg(m, seg);
    m.lock_id = lock;
    m.client_id = client;
    m.status = st;
    return EncodeMsg(type, 12, m);
}

Bytes PageList(uint16_t type, const char *seg, std::vector<uint32_t> pages) {
    dshm_pagelist m = {};
    Seg(m, seg);
    m.count = static_cast<uint32_t>(pages.size());
    return EncodeMsg(type, 13, m, pages.data(), pages.size() * 4);
}

Bytes Note(uint16_t type, const char *seg, uint32_t host, uint32_t value, std::string text = {}) {
    dshm_seg_note m = {};
    Seg(m, seg);
    m.host_id = host;
    m.value = value;
    return EncodeMsg(type, 14, m, text.data(), text.size());
}

Bytes PAdopt(const char *seg) {
    dshm_p_adopt m = {};
    Seg(m, seg);
    m.from_host = 3;
    m.from_client = 4;
    m.to_host = 2;
    m.to_client = 5;
    SetName(m.vm_name, "vm-x");
    return EncodeMsg(DSHM_MSG_P_ADOPT, 15, m);
}

Bytes PAdopted(const char *seg) {
    dshm_p_adopted m = {};
    Seg(m, seg);
    m.to_client = 1;
    m.held[0] = 1;
    return EncodeMsg(DSHM_MSG_P_ADOPTED, 15, m);
}

Bytes Stats(const char *seg, uint32_t flags) {
    dshm_stats m = {};
    Seg(m, seg);
    m.count = 1;
    m.flags = flags;
    dshm_vm_activity a = {};
    SetName(a.vm_name, "vm-b");
    a.host_id = 2;
    a.attached = 1;
    a.read_faults = 500;
    a.write_faults = 300;
    a.acquires = 200;
    return EncodeMsg(DSHM_MSG_P_STATS, 16, m, &a, sizeof a);
}

Bytes OwnLocks(const char *seg) {
    dshm_pagelist m = {};
    Seg(m, seg);
    dshm_lock_entry e[2] = {{0, 2, 5, 0}, {0, 3, 6, 1}};
    m.count = 2;
    return EncodeMsg(DSHM_MSG_OWN_LOCKS, 17, m, e, sizeof e);
}

Bytes OwnCopysets(const char *seg) {
    dshm_copysets m = {};
    Seg(m, seg);
    m.first_page = 0;
    m.count = 2;
    uint64_t sets[2] = {0x6, 0x2};
    return EncodeMsg(DSHM_MSG_OWN_COPYSETS, 18, m, sets, sizeof sets);
}

void PeerSeeds() {
    const Bytes f = Flag(3);
    auto P = [&](const std::string &n, Bytes b) {
        Put("fuzz_peer", n, Cat({f, b}));
        // fuzz_frame: a peer's stream (end 0), whole and in 3-byte chunks.
        Put("fuzz_frame", "peer-" + n,
            Cat({Bytes{0, 0x55, 0}, Hello(DSHM_ROLE_PEER, 2, "h2"), Challenge(1), Proof(2), b}));
    };
    // The stream carrying its own HELLO and handshake (flag 0: its proof
    // does not verify, nothing after it is served), a wrong host, and the
    // handshake's messages out of order.
    Put("fuzz_peer", "hello",
        Cat({Flag(0), Hello(DSHM_ROLE_PEER, 2, "h2"), Challenge(1), Proof(2), Fetch("seg", 1, 0)}));
    Put("fuzz_peer", "hello-wrong-host", Cat({Flag(0), Hello(DSHM_ROLE_PEER, 3, "h3")}));
    Put("fuzz_peer", "fetch-before-proof",
        Cat({Flag(0), Hello(DSHM_ROLE_PEER, 2, "h2"), Challenge(1), Fetch("seg", 1, 0)}));
    Put("fuzz_peer", "proof-before-challenge",
        Cat({Flag(0), Hello(DSHM_ROLE_PEER, 2, "h2"), Proof(2), Challenge(1)}));
    Put("fuzz_frame", "peer-before-auth",
        Cat({Bytes{0, 0x55, 0}, Hello(DSHM_ROLE_PEER, 2, "h2"), Fetch("seg", 1, 0)}));
    P("challenge-after-auth", Challenge(3));
    P("proof-after-auth", Proof(4));
    // One message of every peer type.
    P("error", [] {
        dshm_error e = {DSHM_E_PROTO, 0, 0};
        return EncodeMsg(DSHM_MSG_ERROR, 0, e, "bye", 3);
    }());
    P("fetch", Fetch("seg", 3, 0));
    P("fetch-write", Fetch("seg", 3, DSHM_FETCH_WRITE));
    P("fetch-not-owner", Fetch("rem", 3, 0));
    P("page", PageMsg(DSHM_MSG_PAGE, "rem", 2, 0));
    P("page-error", PageMsg(DSHM_MSG_PAGE, "rem", 2, DSHM_E_NOT_OWNER));
    P("p-acquire", PLock(DSHM_MSG_P_ACQUIRE, "seg", 1, 2, 5));
    P("p-grant", PLock(DSHM_MSG_P_GRANT, "rem", 1, 1, 1));
    P("client-gone", PLock(DSHM_MSG_CLIENT_GONE, "seg", 0, 2, 5));
    P("writeback", Writeback(DSHM_MSG_WRITEBACK, "seg", 4));
    P("p-release", PRelease(DSHM_MSG_P_RELEASE, "seg", 1, 2, 5, 0));
    P("p-release-ack", ReleaseAck(DSHM_MSG_P_RELEASE_ACK, "rem", 1, 1, 0));
    P("invalidate", PageList(DSHM_MSG_INVALIDATE, "rem", {0, 1, 2}));
    P("inval-ack", PageList(DSHM_MSG_INVAL_ACK, "seg", {1, 2 | DSHM_INVAL_KEPT}));
    P("update", Writeback(DSHM_MSG_UPDATE, "rem", 2));
    P("update-ack", PageMsg(DSHM_MSG_UPDATE_ACK, "seg", 2, 0));
    P("p-flush", PRelease(DSHM_MSG_P_FLUSH, "seg", 0, 2, 5, 0));
    P("p-flush-ack", ReleaseAck(DSHM_MSG_P_FLUSH_ACK, "rem", 0, 1, 0));
    P("p-adopt", PAdopt("seg"));
    P("p-adopted", PAdopted("rem"));
    P("drop-copy", Note(DSHM_MSG_DROP_COPY, "seg", 2, 0));
    P("p-stats", Stats("seg", 0));
    P("p-stats-merged", Stats("rem", DSHM_STATS_MERGED));
    P("own-moving", Note(DSHM_MSG_OWN_MOVING, "rem", 1, 0));
    P("own-moving-ack", Note(DSHM_MSG_OWN_MOVING_ACK, "seg", 2, 0));
    P("own-page", PageMsg(DSHM_MSG_OWN_PAGE, "rem", 1, 0));
    P("own-locks", OwnLocks("rem"));
    P("own-copysets", OwnCopysets("rem"));
    P("own-commit", Note(DSHM_MSG_OWN_COMMIT, "rem", 1, 1, "policy"));
    P("own-moved", Note(DSHM_MSG_OWN_MOVED, "rem", 3, 0, "moved"));
    P("excl-grant", PageList(DSHM_MSG_EXCL_GRANT, "rem", {1}));
    P("excl-revoke", PageList(DSHM_MSG_EXCL_REVOKE, "rem", {1}));
    P("excl-revoked", PageList(DSHM_MSG_EXCL_REVOKED, "seg", {1}));
    // Sequences.
    P("seq-lock-release",
      Cat({PLock(DSHM_MSG_P_ACQUIRE, "seg", 2, 2, 5), Fetch("seg", 4, DSHM_FETCH_WRITE),
           Writeback(DSHM_MSG_WRITEBACK, "seg", 4), PRelease(DSHM_MSG_P_RELEASE, "seg", 2, 2, 5, 1),
           PLock(DSHM_MSG_CLIENT_GONE, "seg", 0, 2, 5)}));
    P("seq-cut-release",
      Cat({PLock(DSHM_MSG_P_ACQUIRE, "seg", 2, 2, 5), Writeback(DSHM_MSG_WRITEBACK, "seg", 4)}));
    P("seq-two-acquirers",
      Cat({PLock(DSHM_MSG_P_ACQUIRE, "seg", 3, 2, 5), PLock(DSHM_MSG_P_ACQUIRE, "seg", 3, 2, 6),
           PRelease(DSHM_MSG_P_RELEASE, "seg", 3, 2, 5, 0)}));
    P("seq-move-to-us",
      Cat({Note(DSHM_MSG_OWN_MOVING, "rem", 1, 0), PageMsg(DSHM_MSG_OWN_PAGE, "rem", 0, 0),
           OwnLocks("rem"), OwnCopysets("rem"), Note(DSHM_MSG_OWN_COMMIT, "rem", 1, 1, "test")}));
    P("seq-adopt", Cat({PLock(DSHM_MSG_P_ACQUIRE, "seg", 1, 3, 4), PAdopt("seg"),
                        PRelease(DSHM_MSG_P_FLUSH, "seg", 0, 2, 5, 0)}));
    P("seq-excl",
      Cat({Fetch("seg", 5, DSHM_FETCH_WRITE), PageList(DSHM_MSG_EXCL_REVOKED, "seg", {5}),
           PageList(DSHM_MSG_INVAL_ACK, "seg", {5})}));
    // With a local VM (flag bits 2-3): 1 on "rem" waiting for lock 0, 2 on
    // "seg" holding lock 0, 3 on "rem" idle.  Its client id is 1.
    auto V = [&](const std::string &n, uint8_t vm, Bytes b) {
        Put("fuzz_peer", "vm" + std::to_string(vm) + "-" + n, Cat({Flag(3 | vm << 2), b}));
    };
    V("grant", 1, PLock(DSHM_MSG_P_GRANT, "rem", 0, 1, 1));
    V("grant-refused", 1, PLock(DSHM_MSG_P_GRANT, "rem", 0, 1, 1, DSHM_E_OWNER_LOST));
    V("grant-then-moved", 1,
      Cat({PLock(DSHM_MSG_P_GRANT, "rem", 0, 1, 1), Note(DSHM_MSG_OWN_MOVING, "rem", 3, 0),
           Note(DSHM_MSG_OWN_MOVED, "rem", 3, 0, "policy")}));
    V("queued-behind", 2,
      Cat({PLock(DSHM_MSG_P_ACQUIRE, "seg", 0, 2, 5), Fetch("seg", 2, DSHM_FETCH_WRITE),
           PageList(DSHM_MSG_INVAL_ACK, "seg", {2}), PLock(DSHM_MSG_CLIENT_GONE, "seg", 0, 2, 5)}));
    V("writeback", 2,
      Cat({PLock(DSHM_MSG_P_ACQUIRE, "seg", 1, 2, 5), Writeback(DSHM_MSG_WRITEBACK, "seg", 3),
           PRelease(DSHM_MSG_P_RELEASE, "seg", 1, 2, 5, 1)}));
    V("adopt", 2, Cat({PAdopt("seg"), Stats("seg", 0)}));
    V("invalidate", 3,
      Cat({PageList(DSHM_MSG_INVALIDATE, "rem", {0, 1}), Writeback(DSHM_MSG_UPDATE, "rem", 1),
           PageMsg(DSHM_MSG_PAGE, "rem", 1, 0)}));
    V("excl", 3,
      Cat({PageList(DSHM_MSG_EXCL_GRANT, "rem", {2}), PageList(DSHM_MSG_EXCL_REVOKE, "rem", {2})}));
    V("move-here", 3,
      Cat({Note(DSHM_MSG_OWN_MOVING, "rem", 1, 0), PageMsg(DSHM_MSG_OWN_PAGE, "rem", 0, 0),
           OwnLocks("rem"), OwnCopysets("rem"), Note(DSHM_MSG_OWN_COMMIT, "rem", 1, 1, "test"),
           Fetch("rem", 0, 0)}));
    V("stats", 3, Stats("rem", DSHM_STATS_MERGED));
}

// --- client messages (fuzz_client) ---

Bytes LockReq(uint16_t type, uint32_t lock, uint32_t tag) {
    dshm_lock_req q = {lock, 0};
    return EncodeMsg(type, tag, q);
}

Bytes Attach(const char *seg) {
    dshm_attach a = {};
    Seg(a, seg);
    SetName(a.vm_name, "vm-q");
    return EncodeMsg(DSHM_MSG_ATTACH, 1, a);
}

Bytes Uffd() {
    dshm_uffd u = {0, 16 * DSHM_PAGE_SIZE};  // the harness sets base
    return EncodeMsg(DSHM_MSG_UFFD, 2, u);
}

Bytes Handoff(uint16_t type) {
    dshm_handoff h = {3, 4, 1003, 0, 0};
    return EncodeMsg(type, 20, h);
}

void ClientSeeds() {
    auto C = [](const std::string &n, uint8_t flag, Bytes b) {
        Put("fuzz_client", n, Cat({Flag(flag), b}));
        // fuzz_frame: dshmd reading a client (end 1).
        if (flag != 0)
            b = Cat(
                {flag == 4 ? Hello(DSHM_ROLE_CTL, 0, "dshmctl") : Hello(DSHM_ROLE_CLIENT, 0, "vm"),
                 b});
        Put("fuzz_frame", "client-" + n, Cat({Bytes{1, 0, 2}, b}));  // fds with UFFDs
    };
    // The stream doing its own attach (flag 0).
    C("attach", 0,
      Cat({Hello(DSHM_ROLE_CLIENT, 0, "vm-q"), Attach("seg"), Uffd(),
           LockReq(DSHM_MSG_ACQUIRE, 0, 3), LockReq(DSHM_MSG_RELEASE, 0, 4)}));
    C("attach-rem", 0, Cat({Hello(DSHM_ROLE_CLIENT, 0, "vm-q"), Attach("rem"), Uffd()}));
    C("attach-unknown", 0, Cat({Hello(DSHM_ROLE_CLIENT, 0, "vm-q"), Attach("nope")}));
    C("lock-before-attach", 0,
      Cat({Hello(DSHM_ROLE_CLIENT, 0, "vm-q"), LockReq(DSHM_MSG_ACQUIRE, 0, 3)}));
    C("ctl", 0, Cat({Hello(DSHM_ROLE_CTL, 0, "dshmctl"), [] {
                         dshm_ctl_query q = {DSHM_CTL_SEGMENTS, 0};
                         return EncodeMsg(DSHM_MSG_CTL_QUERY, 1, q);
                     }()}));
    for (uint32_t what : {DSHM_CTL_PEERS, DSHM_CTL_STATS}) {
        dshm_ctl_query q = {what, 0};
        C("ctl-" + std::to_string(what), 4, EncodeMsg(DSHM_MSG_CTL_QUERY, 1, q));
    }
    // Attached by the harness (flag 1: "seg", owned here; flag 3: "rem").
    for (uint8_t flag : {1, 3}) {
        const std::string s = flag == 1 ? "seg-" : "rem-";
        C(s + "acquire-release", flag,
          Cat({LockReq(DSHM_MSG_ACQUIRE, 0, 3), LockReq(DSHM_MSG_RELEASE, 0, 4)}));
        C(s + "acquire-twice", flag,
          Cat({LockReq(DSHM_MSG_ACQUIRE, 1, 3), LockReq(DSHM_MSG_ACQUIRE, 1, 4),
               LockReq(DSHM_MSG_RELEASE, 2, 5)}));
        C(s + "bad-lock", flag, LockReq(DSHM_MSG_ACQUIRE, 300, 3));
        C(s + "migrate-out", flag,
          Cat({LockReq(DSHM_MSG_ACQUIRE, 0, 3), EncodeEmpty(DSHM_MSG_MIGRATE_OUT, 4)}));
        C(s + "adopt", flag, Cat({Handoff(DSHM_MSG_ADOPT), LockReq(DSHM_MSG_RELEASE, 0, 5)}));
        C(s + "detach", flag, EncodeEmpty(DSHM_MSG_DETACH, 6));
        C(s + "uffd-again", flag, Uffd());
    }
}

// --- dshmd's replies to a client (fuzz_frame ends 2 and 3) ---

void ReplySeeds() {
    const Bytes hello = Hello(DSHM_ROLE_CLIENT, 1, "h1");
    dshm_attached at = {16 * DSHM_PAGE_SIZE, DSHM_PAGE_SIZE, DSHM_MAX_LOCKS, 1, 1, 0, 0};
    dshm_lock_reply ok = {0, 0, 1, 8}, failed = {300, DSHM_E_BAD_LOCK, 0, 0};
    dshm_adopted ad = {};
    ad.owner_host = 2;
    // ATTACHED carries the memfd: chunking 0 and fdpos bit 1 give it one.
    Put("fuzz_frame", "reply-attached",
        Cat({Bytes{2, 0, 2}, hello, EncodeMsg(DSHM_MSG_ATTACHED, 1, at)}));
    Put("fuzz_frame", "reply-client",
        Cat({Bytes{2, 0x2d, 0}, hello, EncodeEmpty(DSHM_MSG_READY, 2),
             EncodeMsg(DSHM_MSG_GRANTED, 3, ok), EncodeMsg(DSHM_MSG_RELEASED, 4, ok),
             EncodeMsg(DSHM_MSG_LOCK_FAILED, 5, failed), Handoff(DSHM_MSG_MIGRATE_READY),
             EncodeMsg(DSHM_MSG_ADOPTED, 6, ad)}));
    const std::string json = "{\"segments\": []}";
    Put("fuzz_frame", "reply-ctl",
        Cat({Bytes{3, 0x07, 0}, Hello(DSHM_ROLE_CTL, 1, "h1"),
             Encode(DSHM_MSG_CTL_REPLY, 1, json.data(), json.size())}));
}

// --- diffs (fuzz_diff) ---

void DiffSeeds() {
    uint8_t page[DSHM_PAGE_SIZE], twin[DSHM_PAGE_SIZE];
    for (size_t i = 0; i < DSHM_PAGE_SIZE; i++)
        twin[i] = static_cast<uint8_t>(i * 31 + 7);
    auto Decode = [&](const std::string &n) {
        Bytes d;
        uint16_t enc = EncodeDiff(page, twin, &d);
        Bytes b = {0, static_cast<uint8_t>(enc), static_cast<uint8_t>(enc >> 8)};
        Put("fuzz_diff", "decode-" + n, Cat({b, d}));
    };
    memcpy(page, twin, sizeof page);
    page[0] ^= 1;
    page[4095] ^= 1;
    page[2000] ^= 0xff;
    Decode("runs");
    for (size_t i = 0; i < DSHM_PAGE_SIZE; i += 2)
        page[i] = twin[i] ^ 0x10;
    Decode("mask");
    for (size_t i = 0; i < DSHM_PAGE_SIZE; i++)
        page[i] = twin[i] ^ 0x80;
    Decode("full");
    Put("fuzz_diff", "decode-bad-runs", Bytes{0, 1, 0, 0xff, 0x0f, 0x10, 0x00, 1});
    // Round trips: edits (mode 1), raw (mode 3).
    Put("fuzz_diff", "edits", Bytes{1, 0, 0, 9, 0xff, 0x0f, 9, 0x10, 0, 0x42});
    Bytes raw = {3};
    for (int i = 0; i < 300; i++)
        raw.push_back(static_cast<uint8_t>(i * 7));
    Put("fuzz_diff", "raw", raw);
}

Bytes Text(const std::string &s) {
    return Bytes(s.begin(), s.end());
}

void ConfigSeeds() {
    Put("fuzz_config", "full",
        Text("[dshmd]\nhost-id = 1\nlisten = 198.18.0.1:7450\nsocket = /run/dshm/x.sock\n"
             "poll-us = 50\nack-timeout-ms = 5000\nadopt-timeout-ms = 30000\n"
             "write-ahead-pages = 16\nio-thread = true\nexclusive-pages = no\nname = alpha\n"
             "[policy]\nwindow-s = 60\nreport-ms = 1000\nlog-s = 0\nstrong-min-events = 100\n"
             "strong-min-share = 0.25\nmove-ownership = true\n"
             "[peer h2]\nhost-id = 2\naddress = 198.18.0.2:7450\n"
             "[peer h3]\nhost-id = 3\naddress = [::1]:7451\n"
             "[segment counters]\nsize = 1M\nowner = 2\n"
             "[segment big.seg_1]\nsize = 256M\nowner = 1\n"));
    Put("fuzz_config", "minimal", Text("[dshmd]\nhost-id = 0\nlisten = h:1\n"));
    Put("fuzz_config", "auth-clients",
        Text("[dshmd]\nhost-id = 1\nlisten = a:2\nauth = off\nauth-key-file = /etc/dshm/k\n"
             "socket-mode = 0660\nsocket-group = kvm\n"
             "[segment a]\nsize = 4K\nowner = 1\n"
             "allow = 0f8fad5b-d9cb-469f-a165-70867728950e;1B4E28BA-2FA1-11D2-883F-0016D3CCA427\n"));
    Put("fuzz_config", "sizes",
        Text("[dshmd]\nhost-id = 1\nlisten = a:2\nwaiter-threads = 0\n"
             "[segment a]\nsize = 4096\nowner = 1\n[segment b]\nsize = 4K\nowner = 1\n"
             "[segment c]\nsize = 1G\nowner = 1\n"));
}

Bytes Args(std::initializer_list<const char *> args) {
    Bytes b;
    for (const char *a : args) {
        if (!b.empty())
            b.push_back(0);
        b.insert(b.end(), a, a + strlen(a));
    }
    return b;
}

void DomainXmlSeeds() {
    Put("fuzz_domain_xml", "full",
        Args({"--name",
              "vm-a",
              "--uuid",
              "12345678-1234-1234-1234-123456789abc",
              "--memory=256",
              "--vcpus",
              "2",
              "--type",
              "qemu",
              "--emulator",
              "/opt/qemu/bin/qemu-system-x86_64",
              "--segment",
              "seg",
              "--segment=b.c",
              "--socket",
              "/run/dshm/dshmd.sock",
              "--kernel",
              "/boot/vmlinuz",
              "--initrd",
              "/boot/initrd",
              "--cmdline",
              "console=ttyS0 <x> & 'y'",
              "--disk",
              "/var/lib/a.qcow2",
              "--console-log",
              "/tmp/c.log"}));
    Put("fuzz_domain_xml", "snippet", Args({"--snippet", "--segment", "s1", "--segment", "s_2"}));
    Put("fuzz_domain_xml", "escapes", Args({"--name", "a&b<c>\"d'", "--segment", "x"}));
    Put("fuzz_domain_xml", "utf8", Args({"--name", "v\xc3\xa9m", "--disk", "/d\xe2\x82\xac"}));
}

}  // namespace

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: make_seeds DIR\n");
        return 2;
    }
    g_dir = argv[1];
    mkdir(g_dir.c_str(), 0755);
    PeerSeeds();
    ClientSeeds();
    ReplySeeds();
    DiffSeeds();
    ConfigSeeds();
    DomainXmlSeeds();
    return 0;
}
