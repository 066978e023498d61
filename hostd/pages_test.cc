// Unit tests for pages.h: the page state machine of protocol.md section 4.
#include "pages.h"

#include <cstring>
#include <vector>

#include "diff.h"
#include "dshm/wire.h"

// check.h defines a fail() macro: it must follow the C++ headers.
#include "../tests/unit/check_main.h"

using dshm::PageTable;
using MA = PageTable::MissingAction;
using WA = PageTable::WriteAction;
using IA = PageTable::InvalAction;

namespace {
constexpr size_t kPage = DSHM_PAGE_SIZE;

struct Mem {
    std::vector<uint8_t> bytes = std::vector<uint8_t>(kPage, 0);
    uint8_t *p() { return bytes.data(); }
    void Set64(size_t off, uint64_t v) { memcpy(p() + off, &v, 8); }
    uint64_t Get64(size_t off) const {
        uint64_t v;
        memcpy(&v, bytes.data() + off, 8);
        return v;
    }
};
}  // namespace

START_TEST(missing_faults_fetch_once_and_queue) {
    PageTable t(4, false);
    ck_assert_int_eq(t.state(2), PageTable::kInvalid);
    ck_assert(t.OnMissingFault(2, 7, 0x1000) == MA::kFetch);
    ck_assert_int_eq(t.state(2), PageTable::kFetching);
    ck_assert(t.OnMissingFault(2, 8, 0x5000) == MA::kWait);  // no second FETCH
    ck_assert(t.OnMissingFault(2, 7, 0x1000) == MA::kWait);
    ck_assert_uint_eq(t.waiters(2), 3);
    auto w = t.TakeWaiters(2);
    ck_assert_uint_eq(w.size(), 3);
    ck_assert_uint_eq(w[0].client, 7);
    ck_assert_uint_eq(w[1].addr, 0x5000);
    t.Installed(2, true);
    ck_assert_int_eq(t.state(2), PageTable::kValid);
    ck_assert(t.OnMissingFault(2, 9, 0x9000) == MA::kWake);  // present already
    ck_assert(t.TakeWaiters(2).empty());                     // a late duplicate PAGE
    ck_assert_uint_eq(t.Fetching().size(), 0);
}
END_TEST

// A page read ahead is FETCHING with no waiter, counted in fetching(); a
// fault on it queues as on any fetch; an INVALIDATE while it is in flight
// leaves it alone (its PAGE follows); once valid a punch drops its flag.
START_TEST(read_ahead_is_a_fetch_like_any_other) {
    PageTable t(8, false);
    ck_assert(t.StartAheadFetch(3));
    ck_assert(!t.StartAheadFetch(3));  // in flight: not twice
    ck_assert_int_eq(t.state(3), PageTable::kFetching);
    ck_assert(t.ahead(3));
    ck_assert_uint_eq(t.waiters(3), 0);
    ck_assert(t.OnMissingFault(5, 1, 0x5000) == MA::kFetch);
    ck_assert_uint_eq(t.fetching(), 2);
    ck_assert(t.OnInvalidate(3) == PageTable::InvalAction::kNotHere);
    ck_assert(t.OnMissingFault(3, 1, 0x3000) == MA::kWait);  // the reader caught up
    ck_assert_uint_eq(t.TakeWaiters(3).size(), 1);
    t.Installed(3, true);
    t.Installed(5, true);
    ck_assert_uint_eq(t.fetching(), 0);
    ck_assert(!t.StartAheadFetch(3));  // present: not fetched again
    ck_assert(t.StartAheadFetch(4));
    t.Installed(4, true);
    ck_assert(t.ahead(4));
    ck_assert(t.OnInvalidate(4) == PageTable::InvalAction::kPunch);
    t.Punched(4);
    ck_assert(!t.ahead(4));
    ck_assert(t.TakeAhead(3));  // still flagged: nobody took it as used
    ck_assert(!t.TakeAhead(3));
    PageTable owner(2, true);
    ck_assert(!owner.StartAheadFetch(0));  // an owner fetches nothing
}
END_TEST

START_TEST(owner_fills_holes_with_zeros) {
    PageTable t(2, true);
    ck_assert_int_eq(t.state(0), PageTable::kValid);
    ck_assert(t.OnMissingFault(0, 1, 0) == MA::kFillZero);
    ck_assert_uint_eq(t.waiters(0), 0);
}
END_TEST

START_TEST(nobody_left_to_install_makes_the_page_invalid_again) {
    PageTable t(1, false);
    t.OnMissingFault(0, 1, 0);
    t.OnMissingFault(0, 2, 0);
    t.ForgetClient(1);
    t.ForgetClient(2);
    ck_assert(t.TakeWaiters(0).empty());
    ck_assert_int_eq(t.state(0), PageTable::kFetching);
    ck_assert_uint_eq(t.Fetching().size(), 1);  // re-sent after a reconnect
    t.Installed(0, false);
    ck_assert_int_eq(t.state(0), PageTable::kInvalid);
}
END_TEST

START_TEST(write_fault_takes_twin_once) {
    PageTable t(1, false);
    Mem m;
    m.Set64(0, 41);
    t.OnMissingFault(0, 1, 0);
    t.TakeWaiters(0);
    t.Installed(0, true);
    ck_assert(t.OnWriteFault(0, true, m.p()) == WA::kUnprotect);
    ck_assert_uint_eq(t.dirtiers(0), 1);
    ck_assert_ptr_nonnull(t.twin(0));
    m.Set64(0, 42);                                               // the client writes
    ck_assert(t.OnWriteFault(0, true, m.p()) == WA::kUnprotect);  // a second client
    ck_assert_uint_eq(t.dirtiers(0), 2);
    uint64_t twin0;
    memcpy(&twin0, t.twin(0), 8);
    ck_assert_uint_eq(twin0, 41);  // the twin predates the first write
    ck_assert(t.OnWriteFault(0, false, m.p()) == WA::kUnprotect);  // same client again
    ck_assert_uint_eq(t.dirtiers(0), 2);
}
END_TEST

START_TEST(write_fault_on_punched_page_refaults) {
    PageTable t(1, false);
    Mem m;
    ck_assert(t.OnWriteFault(0, true, m.p()) == WA::kRefault);
    ck_assert_uint_eq(t.dirtiers(0), 0);
    ck_assert_ptr_null(t.twin(0));
}
END_TEST

START_TEST(release_sends_exact_bytes_and_keeps_concurrent_writes) {
    // Two local clients write different counters of one page; the first
    // releases while the second keeps writing: the second's later write
    // must be in ITS release, not absorbed into the twin.
    PageTable t(1, true);
    Mem m;
    t.OnWriteFault(0, true, m.p());  // client A
    t.OnWriteFault(0, true, m.p());  // client B
    m.Set64(0, 1);                   // A's counter
    m.Set64(8, 5);                   // B's counter, first write
    std::vector<uint8_t> d;
    uint16_t enc = t.ReleaseDirty(0, m.p(), &d);  // A releases (carries B's 5 early)
    ck_assert_uint_ne(enc, 0);
    ck_assert_uint_lt(d.size(), 32);
    m.Set64(8, 6);                       // B writes again after A's diff
    enc = t.ReleaseDirty(0, m.p(), &d);  // B releases: must carry 6
    ck_assert_uint_ne(enc, 0);
    Mem owner;
    owner.Set64(0, 1);
    owner.Set64(8, 5);  // what the owner got from A's release
    ck_assert(dshm::ApplyDiff(owner.p(), enc, d.data(), d.size()).ok());
    ck_assert_uint_eq(owner.Get64(8), 6);
    ck_assert_uint_eq(t.dirtiers(0), 0);
    ck_assert_ptr_null(t.twin(0));
}
END_TEST

START_TEST(whole_page_is_borrowed_only_from_a_sole_dirtier) {
    // A page rewritten as a whole by its only dirtier: its diff is the page
    // itself (nothing copied) and the twin is gone.  With a second dirtier,
    // or one unchanged byte, the diff is encoded into `out` as usual.
    PageTable t(3, true);
    Mem m[3];
    std::vector<uint8_t> out(dshm::kMaxEncodedDiff, 0xcc);
    for (uint32_t p = 0; p < 3; p++)
        t.OnWriteFault(p, true, m[p].p());
    t.OnWriteFault(1, true, m[1].p());  // a second client dirties page 1
    for (uint32_t p = 0; p < 3; p++)
        memset(m[p].p(), 0x5a, kPage);
    m[2].p()[4095] = 0;  // page 2: one byte unchanged
    size_t len = 0;
    bool whole = false;
    ck_assert_uint_eq(t.ReleaseDirty(0, m[0].p(), out.data(), &len, &whole), DSHM_ENC_FULL);
    ck_assert(whole);
    ck_assert_uint_eq(len, kPage);
    ck_assert_uint_eq(out[0], 0xcc);  // not copied
    ck_assert_ptr_null(t.twin(0));
    ck_assert_uint_eq(t.dirtiers(0), 0);

    ck_assert_uint_eq(t.ReleaseDirty(1, m[1].p(), out.data(), &len, &whole), DSHM_ENC_FULL);
    ck_assert(!whole);
    ck_assert_uint_eq(len, kPage);
    ck_assert_uint_eq(out[0], 0x5a);
    ck_assert_uint_eq(t.twin(1)[0], 0x5a);  // advanced by the diff: the other dirtier goes on
    ck_assert_uint_eq(t.dirtiers(1), 1);

    ck_assert_uint_eq(t.ReleaseDirty(2, m[2].p(), out.data(), &len, &whole), DSHM_ENC_RUNS);
    ck_assert(!whole);
    ck_assert_uint_eq(len, 4 + kPage - 1);
    ck_assert_ptr_null(t.twin(2));
}
END_TEST

START_TEST(marks_send_whole_unchecked_and_drop) {
    // Under an exclusive mark a sole dirtier's page goes whole even with an
    // unchanged byte (the caller knows the owner holds the twin's bytes);
    // marks are dropped per host or all at once, and by a change of owner.
    PageTable t(4, true);
    Mem m;
    ck_assert_int_eq(t.excl(0), -1);
    t.SetExcl(0, 3);
    t.SetExcl(2, 3);
    t.SetExcl(3, 5);
    t.OnWriteFault(0, true, m.p());
    memset(m.p(), 0x5a, 100);  // 100 bytes changed, the rest not
    std::vector<uint8_t> out(dshm::kMaxEncodedDiff);
    size_t len = 0;
    bool whole = false;
    ck_assert_uint_eq(t.ReleaseDirty(0, m.p(), out.data(), &len, &whole, true), DSHM_ENC_FULL);
    ck_assert(whole);
    ck_assert_uint_eq(len, kPage);
    ck_assert_ptr_null(t.twin(0));
    const std::vector<uint32_t> three = t.DropExcl(3);
    ck_assert_uint_eq(three.size(), 2);
    ck_assert_uint_eq(three[0], 0);
    ck_assert_uint_eq(three[1], 2);
    ck_assert_int_eq(t.excl(3), 5);
    t.SetExcl(1, 3);
    ck_assert_uint_eq(t.DropExcl(-1).size(), 2);
    ck_assert_int_eq(t.excl(1), -1);
    ck_assert_int_eq(t.excl(3), -1);
    t.SetExcl(2, 3);
    t.BecomeNonOwner(std::vector<bool>(4, true));
    ck_assert_int_eq(t.excl(2), -1);
    t.SetExcl(2, 3);
    t.Punched(2);  // the mark goes with the copy
    ck_assert_int_eq(t.excl(2), -1);
    t.SetExcl(2, 3);
    t.BecomeOwner(std::vector<uint64_t>(4, 0));
    ck_assert_int_eq(t.excl(2), -1);
}
END_TEST

START_TEST(unchanged_release_sends_nothing) {
    PageTable t(1, true);
    Mem m;
    t.OnWriteFault(0, true, m.p());
    std::vector<uint8_t> d;
    ck_assert_uint_eq(t.ReleaseDirty(0, m.p(), &d), 0);
    ck_assert_ptr_null(t.twin(0));
}
END_TEST

START_TEST(dead_client_rolls_back_only_if_sole_dirtier) {
    PageTable t(2, true);
    Mem a, b;
    a.Set64(0, 10);
    t.OnWriteFault(0, true, a.p());
    a.Set64(0, 999);  // unreleased write
    ck_assert(t.DropDirtier(0, a.p()));
    ck_assert_uint_eq(a.Get64(0), 10);
    ck_assert_ptr_null(t.twin(0));
    t.OnWriteFault(1, true, b.p());
    t.OnWriteFault(1, true, b.p());
    b.Set64(0, 7);
    ck_assert(!t.DropDirtier(1, b.p()));  // another dirtier remains: kept
    ck_assert_uint_eq(b.Get64(0), 7);
    ck_assert_uint_eq(t.dirtiers(1), 1);
}
END_TEST

START_TEST(invalidate_punches_clean_keeps_dirty) {
    PageTable t(3, false);
    Mem m;
    for (uint32_t p : {0u, 1u}) {
        t.OnMissingFault(p, 1, 0);
        t.TakeWaiters(p);
        t.Installed(p, true);
    }
    t.OnWriteFault(1, true, m.p());
    ck_assert(t.OnInvalidate(0) == IA::kPunch);
    ck_assert_int_eq(t.state(0), PageTable::kInvalid);
    ck_assert(t.OnInvalidate(1) == IA::kKeep);
    ck_assert_int_eq(t.state(1), PageTable::kValid);
    ck_assert(t.OnInvalidate(2) == IA::kNotHere);
    t.OnMissingFault(2, 1, 0);
    ck_assert(t.OnInvalidate(2) == IA::kNotHere);  // fetching: answered later
    ck_assert_int_eq(t.state(2), PageTable::kFetching);
}
END_TEST

START_TEST(update_applies_to_page_and_twin) {
    PageTable t(2, false);
    Mem page, other;
    for (uint32_t p : {0u, 1u}) {
        t.OnMissingFault(p, 1, 0);
        t.TakeWaiters(p);
        t.Installed(p, true);
    }
    t.OnWriteFault(0, true, page.p());
    page.Set64(0, 3);  // our client's write, unreleased
    // Another host's released diff: counter at offset 8 := 77.
    Mem before, after;
    after.Set64(8, 77);
    std::vector<uint8_t> d;
    uint16_t enc = dshm::EncodeDiff(after.p(), before.p(), &d);
    bool applied = false;
    ck_assert(t.OnUpdate(0, enc, d.data(), d.size(), page.p(), &applied).ok());
    ck_assert(applied);
    ck_assert_uint_eq(page.Get64(8), 77);
    ck_assert_uint_eq(page.Get64(0), 3);  // our write untouched
    // Our release then carries only our own byte change, not the update.
    std::vector<uint8_t> mine;
    ck_assert_uint_ne(t.ReleaseDirty(0, page.p(), &mine), 0);
    Mem owner;
    owner.Set64(8, 77);
    owner.Set64(0, 0);
    ck_assert(
        dshm::ApplyDiff(owner.p(), dshm::EncodeDiff(page.p(), owner.p(), &d), d.data(), d.size())
            .ok());
    ck_assert_uint_eq(owner.Get64(8), 77);
    // An update to an invalid page is ignored.
    t.OnInvalidate(1);
    ck_assert(t.OnUpdate(1, enc, d.data(), d.size(), other.p(), &applied).ok());
    ck_assert(!applied);
}
END_TEST

START_TEST(owner_serves_twin_and_tracks_copysets) {
    PageTable t(1, true);
    Mem m;
    m.Set64(0, 1);
    ck_assert_ptr_eq(t.ServeFetch(0, 2, m.p()), m.p());  // clean: the page itself
    ck_assert_uint_eq(t.copyset(0), 1u << 2);
    t.OnWriteFault(0, true, m.p());  // a local client writes...
    m.Set64(0, 99);
    const uint8_t *served = t.ServeFetch(0, 3, m.p());  // ...others get the released content
    uint64_t v;
    memcpy(&v, served, 8);
    ck_assert_uint_eq(v, 1);
    ck_assert_uint_eq(t.copyset(0), (1u << 2) | (1u << 3));
    // A release by host 2: invalidate host 3 only; host 2 stays.
    ck_assert_uint_eq(t.InvalidationTargets(0, /*self=*/1, /*writer=*/2), 1u << 3);
    // A local release: both remote holders.
    ck_assert_uint_eq(t.InvalidationTargets(0, 1, 1), (1u << 2) | (1u << 3));
    // Hosts leave only on acknowledgement of a punch.
    t.LeftCopyset(0, 3);
    ck_assert_uint_eq(t.copyset(0), 1u << 2);
    t.DropHost(2);
    ck_assert_uint_eq(t.copyset(0), 0);
}
END_TEST

START_TEST(remote_release_reaches_owner_twin) {
    PageTable t(1, true);
    Mem m;
    t.OnWriteFault(0, true, m.p());  // a local client is writing
    Mem after, before;
    after.Set64(16, 5);
    std::vector<uint8_t> d;
    uint16_t enc = dshm::EncodeDiff(after.p(), before.p(), &d);
    ck_assert(t.ApplyInFlight(0, enc, d.data(), d.size(), m.p()).ok());
    ck_assert_uint_eq(t.inflight(0), 1);
    t.CommitInFlight(0, enc, d.data(), d.size(), m.p(), false);
    ck_assert_uint_eq(t.inflight(0), 0);
    uint64_t v;
    memcpy(&v, t.ServeFetch(0, 2, m.p()) + 16, 8);
    ck_assert_uint_eq(v, 5);  // served from the twin, which has the released bytes
    ck_assert_uint_eq(m.Get64(16), 5);
}
END_TEST

// A release applied as it arrives: the frame holds the pre-image until the
// verdict; committed with want_diff it is the applied diff again.
START_TEST(in_flight_commit_gives_the_diff_back) {
    PageTable t(1, true);
    Mem m;
    m.Set64(0, 1);
    m.Set64(64, 2);
    Mem after = m;
    after.Set64(64, 7);
    std::vector<uint8_t> d;
    const uint16_t enc = dshm::EncodeDiff(after.p(), m.p(), &d);
    const std::vector<uint8_t> sent = d;
    ck_assert(t.ApplyInFlight(0, enc, d.data(), d.size(), m.p()).ok());
    ck_assert_uint_eq(m.Get64(64), 7);  // applied at once
    ck_assert(d != sent);               // the frame now carries the old bytes
    Mem pre = after;
    ck_assert(dshm::ApplyDiff(pre.p(), enc, d.data(), d.size()).ok());
    ck_assert_uint_eq(pre.Get64(64), 2);  // ... which rebuild what a FETCH must see
    t.CommitInFlight(0, enc, d.data(), d.size(), m.p(), true);
    ck_assert(d == sent);
    ck_assert_uint_eq(m.Get64(0), 1);
    ck_assert_uint_eq(m.Get64(64), 7);
}
END_TEST

// A release not accepted is reverted exactly: the bytes it covered get their
// old values back, in the page and in a twin taken after the apply, while a
// local writer's bytes and a second in-flight release's bytes stay.
START_TEST(in_flight_revert_restores_only_its_bytes) {
    PageTable t(1, true);
    Mem m;
    for (size_t off = 0; off < kPage; off += 8)
        m.Set64(off, off);
    const Mem orig = m;
    // Host A rewrites the whole page except bytes [512, 520); host B writes 8 bytes there.
    Mem a = m;
    for (size_t off = 0; off < kPage; off += 8) {
        if (off != 512)
            a.Set64(off, ~uint64_t(off));
    }
    std::vector<uint8_t> da, db;
    const uint16_t ea = dshm::EncodeDiff(a.p(), m.p(), &da);
    Mem b = m;
    b.Set64(512, 99);
    const uint16_t eb = dshm::EncodeDiff(b.p(), m.p(), &db);
    ck_assert(t.ApplyInFlight(0, ea, da.data(), da.size(), m.p()).ok());
    ck_assert(t.ApplyInFlight(0, eb, db.data(), db.size(), m.p()).ok());
    ck_assert_uint_eq(t.inflight(0), 2);
    // A local client starts writing: its twin holds both applied releases.
    t.OnWriteFault(0, true, m.p());
    m.p()[517] = 0xee;                                     // a byte neither release covers
    t.RevertInFlight(0, ea, da.data(), da.size(), m.p());  // A refused
    ck_assert_uint_eq(t.inflight(0), 1);
    Mem want = orig;
    want.Set64(512, 99);
    for (size_t i = 0; i < kPage; i++) {
        ck_assert_msg(t.twin(0)[i] == want.p()[i], "twin byte %zu", i);
        if (i != 517)
            ck_assert_msg(m.p()[i] == want.p()[i], "page byte %zu", i);
    }
    ck_assert_uint_eq(m.p()[517], 0xee);  // the local writer's byte stays
    t.CommitInFlight(0, eb, db.data(), db.size(), m.p(), false);
    ck_assert_uint_eq(t.inflight(0), 0);
    ck_assert_uint_eq(m.p()[512], 99);  // B's byte stays
}
END_TEST

// Garbage is refused before anything is touched.
START_TEST(in_flight_refuses_an_invalid_diff) {
    PageTable t(1, true);
    Mem m;
    m.Set64(0, 42);
    std::vector<uint8_t> bad = {0, 0, 0, 0};  // a zero-length run
    ck_assert(!t.ApplyInFlight(0, DSHM_ENC_RUNS, bad.data(), bad.size(), m.p()).ok());
    ck_assert_uint_eq(t.inflight(0), 0);
    ck_assert_uint_eq(m.Get64(0), 42);
}
END_TEST

START_TEST(page_set_dedupes_and_clears) {
    dshm::PageSet s;
    ck_assert(s.insert(7));
    ck_assert(s.insert(3));
    ck_assert(!s.insert(7));
    ck_assert(s.insert(1000));
    ck_assert_uint_eq(s.size(), 3);
    std::vector<uint32_t> got(s.begin(), s.end());
    ck_assert(got == (std::vector<uint32_t>{7, 3, 1000}));
    s.clear();
    ck_assert(s.empty());
    ck_assert(s.insert(7));  // gone after clear
    ck_assert_uint_eq(s.size(), 1);
}
END_TEST

// Idle metadata: a table of a 64 GiB segment allocates nothing per page
// until pages are used, and its counts equal a walk of the pages.
START_TEST(idle_pages_cost_nothing_and_counts_are_kept) {
    const uint32_t n = uint32_t((uint64_t(64) << 30) / DSHM_PAGE_SIZE);
    for (bool owner : {false, true}) {
        dshm::PageTable t(n, owner);
        ck_assert_uint_eq(t.chunks(), 0);
        ck_assert_uint_eq(t.valid_pages(), owner ? n : 0);
        ck_assert_int_eq(t.state(n - 1), owner ? PageTable::kValid : PageTable::kInvalid);
        ck_assert(t.Fetching().empty());
        ck_assert(t.DropExcl(-1).empty());
        t.DropHost(2);
        t.ForgetClient(1);
        ck_assert_uint_eq(t.chunks(), 0);  // reading and no-op walks allocate nothing
    }
    // A non-owner: a few pages through their states; the counts follow.
    dshm::PageTable t(n, false);
    Mem m;
    ck_assert(t.OnMissingFault(5, 1, 0) == PageTable::MissingAction::kFetch);
    ck_assert(t.StartAheadFetch(6));
    ck_assert(t.StartAheadFetch(n - 1));
    ck_assert_uint_eq(t.fetching(), 3);
    ck_assert(t.Fetching() == (std::vector<uint32_t>{5, 6, n - 1}));
    ck_assert_uint_eq(t.waiters(5), 1);
    ck_assert_uint_eq(t.TakeWaiters(5).size(), 1);
    t.Installed(5, true);
    t.Installed(6, true);
    t.Installed(n - 1, false);
    ck_assert_uint_eq(t.valid_pages(), 2);
    ck_assert_uint_eq(t.ahead_pages(), 1);  // 6; n-1 went with its failed fetch
    ck_assert(t.TakeAhead(6));
    ck_assert_uint_eq(t.ahead_pages(), 0);
    t.OnWriteFault(5, true, m.p());
    ck_assert_uint_eq(t.twinned_pages(), 1);
    t.SetExcl(5, 1);
    ck_assert_uint_eq(t.marked_pages(), 1);
    ck_assert(t.CleanValid() == (std::vector<uint32_t>{6}));
    std::vector<uint8_t> d;
    t.ReleaseDirty(5, m.p(), &d);
    ck_assert_uint_eq(t.twinned_pages(), 0);
    ck_assert(t.OnInvalidate(6) == PageTable::InvalAction::kPunch);
    t.Punched(5);
    ck_assert_uint_eq(t.valid_pages(), 0);
    ck_assert_uint_eq(t.marked_pages(), 0);
    ck_assert_uint_eq(t.chunks(), 2);  // pages 5, 6 and n-1: two chunks
    // The owner's copy sets.
    dshm::PageTable o(n, true);
    o.ServeFetch(3, 2, m.p());
    o.ServeFetch(3, 4, m.p());
    o.InvalidationTargets(n - 1, 1, 2);
    ck_assert_uint_eq(o.copies(), 3);
    o.DropHost(2);
    ck_assert_uint_eq(o.copies(), 1);
    o.LeftCopyset(3, 4);
    ck_assert_uint_eq(o.copies(), 0);
    ck_assert_uint_eq(o.chunks(), 2);
}
END_TEST

int main() {
    Suite *s = suite_create("hostd/pages");
    TCase *tc = NewTCase("state machine", 20);
    tcase_add_test(tc, missing_faults_fetch_once_and_queue);
    tcase_add_test(tc, owner_fills_holes_with_zeros);
    tcase_add_test(tc, read_ahead_is_a_fetch_like_any_other);
    tcase_add_test(tc, nobody_left_to_install_makes_the_page_invalid_again);
    tcase_add_test(tc, write_fault_takes_twin_once);
    tcase_add_test(tc, write_fault_on_punched_page_refaults);
    tcase_add_test(tc, release_sends_exact_bytes_and_keeps_concurrent_writes);
    tcase_add_test(tc, unchanged_release_sends_nothing);
    tcase_add_test(tc, dead_client_rolls_back_only_if_sole_dirtier);
    tcase_add_test(tc, invalidate_punches_clean_keeps_dirty);
    tcase_add_test(tc, update_applies_to_page_and_twin);
    tcase_add_test(tc, owner_serves_twin_and_tracks_copysets);
    tcase_add_test(tc, remote_release_reaches_owner_twin);
    tcase_add_test(tc, in_flight_commit_gives_the_diff_back);
    tcase_add_test(tc, in_flight_revert_restores_only_its_bytes);
    tcase_add_test(tc, in_flight_refuses_an_invalid_diff);
    tcase_add_test(tc, page_set_dedupes_and_clears);
    tcase_add_test(tc, whole_page_is_borrowed_only_from_a_sole_dirtier);
    tcase_add_test(tc, marks_send_whole_unchecked_and_drop);
    tcase_add_test(tc, idle_pages_cost_nothing_and_counts_are_kept);
    suite_add_tcase(s, tc);
    return RunSuite(s);
}
