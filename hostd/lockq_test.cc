// Unit tests for lockq.h: FIFO grants, error codes, dropping clients/hosts.
#include "lockq.h"

#include <optional>
#include <utility>
#include <vector>

// check.h defines a fail() macro: it must follow the C++ headers.
#include "../tests/unit/check_main.h"

using dshm::Holder;
using dshm::LockTable;
using dshm::Status;

namespace {

bool Acquire(LockTable &t, uint32_t lock, Holder who) {
    bool granted = true;
    Status s = t.Acquire(lock, who, &granted);
    ck_assert_msg(s.ok(), "%s", s.ToString().c_str());
    return granted;
}

std::optional<Holder> Release(LockTable &t, uint32_t lock, Holder who) {
    std::optional<Holder> next;
    Status s = t.Release(lock, who, &next);
    ck_assert_msg(s.ok(), "%s", s.ToString().c_str());
    return next;
}

bool Is(const std::optional<Holder> &h, Holder want) {
    return h.has_value() && *h == want;
}

}  // namespace

START_TEST(fifo_many_waiters) {
    LockTable t;
    const Holder first{0, 0};
    ck_assert(Acquire(t, 7, first));
    std::vector<Holder> waiters;
    for (uint32_t i = 1; i <= 50; i++) {
        waiters.push_back(Holder{i % 5, i});
        ck_assert(!Acquire(t, 7, waiters.back()));
    }
    ck_assert_uint_eq(t.Waiters(7), 50);
    Holder cur = first;
    for (const Holder &w : waiters) {
        std::optional<Holder> next = Release(t, 7, cur);
        ck_assert(Is(next, w));
        ck_assert(Is(t.HolderOf(7), w));
        cur = w;
    }
    ck_assert(!Release(t, 7, cur).has_value());
    ck_assert(!t.HolderOf(7).has_value());
    ck_assert_uint_eq(t.Waiters(7), 0);
    // Free again: granted at once.
    ck_assert(Acquire(t, 7, Holder{3, 3}));
}
END_TEST

START_TEST(error_codes) {
    LockTable t(16);
    ck_assert_uint_eq(t.nlocks(), 16);
    const Holder a{1, 10}, b{2, 20};
    bool granted = true;
    Status s = t.Acquire(16, a, &granted);
    ck_assert_int_eq(s.code(), DSHM_E_BAD_LOCK);
    ck_assert(!granted);
    std::optional<Holder> next = a;
    s = t.Release(16, a, &next);
    ck_assert_int_eq(s.code(), DSHM_E_BAD_LOCK);
    ck_assert(!next.has_value());
    ck_assert_int_eq(LockTable().Acquire(DSHM_MAX_LOCKS, a, &granted).code(), DSHM_E_BAD_LOCK);

    // Release of a free lock.
    ck_assert_int_eq(t.Release(3, a, &next).code(), DSHM_E_NOT_HELD);
    ck_assert(Acquire(t, 3, a));
    granted = true;
    ck_assert_int_eq(t.Acquire(3, a, &granted).code(), DSHM_E_ALREADY_HELD);
    ck_assert(!granted);
    ck_assert(!Acquire(t, 3, b));
    ck_assert_int_eq(t.Acquire(3, b, &granted).code(), DSHM_E_PENDING);
    ck_assert_uint_eq(t.Waiters(3), 1);
    // A waiter releasing is not the holder.
    ck_assert_int_eq(t.Release(3, b, &next).code(), DSHM_E_NOT_HELD);
    // Same client id on another host is another client.
    ck_assert_int_eq(t.Release(3, Holder{2, 10}, &next).code(), DSHM_E_NOT_HELD);
    ck_assert(Is(t.HolderOf(3), a));
    ck_assert(Is(Release(t, 3, a), b));
    // Out-of-range queries are harmless.
    ck_assert(!t.HolderOf(1000).has_value());
    ck_assert_uint_eq(t.Waiters(1000), 0);
}
END_TEST

START_TEST(drop_client_in_middle_of_queue) {
    LockTable t;
    const Holder h{0, 1}, w1{0, 2}, w2{1, 3}, w3{0, 4};
    ck_assert(Acquire(t, 5, h));
    ck_assert(!Acquire(t, 5, w1));
    ck_assert(!Acquire(t, 5, w2));
    ck_assert(!Acquire(t, 5, w3));
    // w2 also holds lock 9, with w1 waiting.
    ck_assert(Acquire(t, 9, w2));
    ck_assert(!Acquire(t, 9, w1));

    auto grants = t.DropClient(w2);
    ck_assert_uint_eq(grants.size(), 1);
    ck_assert_uint_eq(grants[0].first, 9);
    ck_assert(grants[0].second == w1);
    ck_assert(Is(t.HolderOf(5), h));
    ck_assert_uint_eq(t.Waiters(5), 2);
    ck_assert(Is(Release(t, 5, h), w1));
    ck_assert(Is(Release(t, 5, w1), w3));

    // Dropping the holder grants to the head of the queue.
    ck_assert(!Acquire(t, 5, h));
    grants = t.DropClient(w3);
    ck_assert_uint_eq(grants.size(), 1);
    ck_assert(grants[0] == std::make_pair(uint32_t{5}, h));
    // Dropping an unknown client changes nothing.
    ck_assert(t.DropClient(Holder{9, 9}).empty());
    ck_assert(Is(t.HolderOf(5), h));
}
END_TEST

START_TEST(drop_host_with_holders_and_waiters) {
    LockTable t;
    const Holder a1{4, 1}, a2{4, 2}, a3{4, 3};  // host 4
    const Holder b1{5, 1}, b2{5, 2};            // host 5
    // lock 0: a1 holds; a2, b1 wait  -> b1
    ck_assert(Acquire(t, 0, a1));
    ck_assert(!Acquire(t, 0, a2));
    ck_assert(!Acquire(t, 0, b1));
    // lock 1: b2 holds; a3, b1 wait  -> unchanged holder, a3 removed
    ck_assert(Acquire(t, 1, b2));
    ck_assert(!Acquire(t, 1, a3));
    ck_assert(!Acquire(t, 1, b1));
    // lock 2: a2 holds; a1, a3 wait  -> free
    ck_assert(Acquire(t, 2, a2));
    ck_assert(!Acquire(t, 2, a1));
    ck_assert(!Acquire(t, 2, a3));
    // lock 200: a3 holds; b2, a1, b1 wait  -> b2, queue [b1]
    ck_assert(Acquire(t, 200, a3));
    ck_assert(!Acquire(t, 200, b2));
    ck_assert(!Acquire(t, 200, a1));
    ck_assert(!Acquire(t, 200, b1));

    auto grants = t.DropHost(4);
    ck_assert_uint_eq(grants.size(), 2);
    ck_assert(grants[0] == std::make_pair(uint32_t{0}, b1));
    ck_assert(grants[1] == std::make_pair(uint32_t{200}, b2));
    ck_assert(Is(t.HolderOf(0), b1));
    ck_assert_uint_eq(t.Waiters(0), 0);
    ck_assert(Is(t.HolderOf(1), b2));
    ck_assert_uint_eq(t.Waiters(1), 1);
    ck_assert(!t.HolderOf(2).has_value());
    ck_assert_uint_eq(t.Waiters(2), 0);
    ck_assert(Is(t.HolderOf(200), b2));
    ck_assert_uint_eq(t.Waiters(200), 1);
    ck_assert(Is(Release(t, 200, b2), b1));

    auto snap = t.Snapshot();
    ck_assert_uint_eq(snap.size(), 3);
    ck_assert_uint_eq(std::get<0>(snap[0]), 0);
    ck_assert_uint_eq(std::get<0>(snap[1]), 1);
    ck_assert(std::get<1>(snap[1]) == b2);
    ck_assert_uint_eq(std::get<2>(snap[1]), 1);
    ck_assert_uint_eq(std::get<0>(snap[2]), 200);
    ck_assert(t.DropHost(4).empty());
}
END_TEST

START_TEST(locks_are_independent) {
    LockTable t;
    for (uint32_t l = 0; l < DSHM_MAX_LOCKS; l++) {
        ck_assert(Acquire(t, l, Holder{l % DSHM_MAX_HOSTS, l}));
        ck_assert(!Acquire(t, l, Holder{63, 1000 + l}));
    }
    ck_assert_uint_eq(t.Snapshot().size(), DSHM_MAX_LOCKS);
    // Releasing every even lock touches only that lock.
    for (uint32_t l = 0; l < DSHM_MAX_LOCKS; l += 2) {
        ck_assert(Is(Release(t, l, Holder{l % DSHM_MAX_HOSTS, l}), Holder{63, 1000 + l}));
    }
    for (uint32_t l = 1; l < DSHM_MAX_LOCKS; l += 2) {
        ck_assert(Is(t.HolderOf(l), Holder{l % DSHM_MAX_HOSTS, l}));
        ck_assert_uint_eq(t.Waiters(l), 1);
    }
    auto snap = t.Snapshot();
    ck_assert_uint_eq(snap.size(), DSHM_MAX_LOCKS);
    for (uint32_t l = 0; l < DSHM_MAX_LOCKS; l++) {
        ck_assert_uint_eq(std::get<0>(snap[l]), l);
        ck_assert_uint_eq(std::get<2>(snap[l]), l % 2);
    }
}
END_TEST

// A migrated VM keeps its holds and its queue positions under its new name.
START_TEST(rename_keeps_holds_and_positions) {
    LockTable t;
    const Holder a{1, 1}, b{2, 5}, c{3, 7}, moved{3, 9};
    bool now = false;
    ck_assert(t.Acquire(0, b, &now).ok() && now);   // b holds 0
    ck_assert(t.Acquire(1, a, &now).ok() && now);   // a holds 1
    ck_assert(t.Acquire(1, c, &now).ok() && !now);  // c waits 1
    ck_assert(t.Acquire(1, b, &now).ok() && !now);  // b waits 1 behind c
    std::vector<uint32_t> held, queued;
    t.Rename(b, moved, &held, &queued);
    ck_assert(held == std::vector<uint32_t>{0});
    ck_assert(queued == std::vector<uint32_t>{1});
    ck_assert(Is(t.HolderOf(0), moved));
    std::optional<Holder> next;
    ck_assert(t.Release(0, b, &next).code() == DSHM_E_NOT_HELD);  // the old name holds nothing
    ck_assert(t.DropClient(b).empty());
    ck_assert(Is(Release(t, 1, a), c));      // FIFO order kept: c first
    ck_assert(Is(Release(t, 1, c), moved));  // then the renamed waiter
}
END_TEST

// Export/Import moves the table to a new owner unchanged; bad input is refused.
START_TEST(export_import_round_trip) {
    LockTable t;
    bool now = false;
    for (uint32_t h = 1; h <= 4; h++)
        ck_assert(t.Acquire(7, Holder{h, h * 10}, &now).ok());
    ck_assert(t.Acquire(200, Holder{2, 3}, &now).ok());
    auto entries = t.Export();
    ck_assert_uint_eq(entries.size(), 5);
    LockTable u;
    ck_assert(u.Import(entries).ok());
    ck_assert(u.Export().size() == 5);
    ck_assert(Is(u.HolderOf(7), Holder{1, 10}));
    ck_assert_uint_eq(u.Waiters(7), 3);
    ck_assert(Is(Release(u, 7, Holder{1, 10}), Holder{2, 20}));
    ck_assert(Is(u.HolderOf(200), Holder{2, 3}));
    // A waiter without a holder, a duplicate, a bad lock id: refused, table emptied.
    LockTable v;
    ck_assert(v.Import({{7, Holder{1, 1}, 1}}).code() == DSHM_E_PROTO);
    ck_assert(v.Import({{7, Holder{1, 1}, 0}, {7, Holder{1, 1}, 1}}).code() == DSHM_E_PROTO);
    ck_assert(!v.HolderOf(7));
    ck_assert(v.Import({{DSHM_MAX_LOCKS, Holder{1, 1}, 0}}).code() == DSHM_E_PROTO);
}
END_TEST

// A lock takes at most kMaxWaitersPerLock waiters, a table kMaxWaiters:
// one more is refused with E_BUSY (nothing changes), and fits again once a
// waiter has gone.  Many P_ACQUIREs from one peer cost O(1) each.
START_TEST(waiter_bounds) {
    LockTable t;
    const size_t per_lock = LockTable::kMaxWaitersPerLock;
    const uint32_t full_locks = LockTable::kMaxWaiters / per_lock;
    ck_assert_uint_lt(full_locks, t.nlocks());
    uint32_t next = 1;
    for (uint32_t lock = 0; lock < full_locks; lock++) {
        ck_assert(Acquire(t, lock, Holder{1, 0}));
        for (size_t i = 0; i < per_lock; i++)
            ck_assert(!Acquire(t, lock, Holder{2, next++}));
        bool granted = true;
        Status busy = t.Acquire(lock, Holder{3, next++}, &granted);
        ck_assert_int_eq(busy.code(), DSHM_E_BUSY);
        ck_assert(!granted);
        ck_assert_uint_eq(t.Waiters(lock), per_lock);
        // A duplicate is still told apart from a full queue.
        ck_assert_int_eq(t.Acquire(lock, Holder{2, next - 2}, &granted).code(), DSHM_E_PENDING);
    }
    ck_assert_uint_eq(t.TotalWaiters(), LockTable::kMaxWaiters);
    // The table is full: a free lock is still granted, nobody more waits.
    ck_assert(Acquire(t, full_locks, Holder{1, 0}));
    bool granted = true;
    ck_assert_int_eq(t.Acquire(full_locks, Holder{3, 1}, &granted).code(), DSHM_E_BUSY);
    ck_assert_uint_eq(t.Waiters(full_locks), 0);
    // A grant makes room for one more.
    ck_assert(Release(t, 0, Holder{1, 0}).has_value());
    ck_assert(!Acquire(t, full_locks, Holder{3, 1}));
    ck_assert_uint_eq(t.TotalWaiters(), LockTable::kMaxWaiters);
    // Dropping a host empties the queues and the count.
    t.DropHost(2);
    ck_assert_uint_eq(t.TotalWaiters(), 1);
    t.DropHost(3);
    ck_assert_uint_eq(t.TotalWaiters(), 0);
    for (uint32_t lock = 1; lock < full_locks; lock++)
        ck_assert_uint_eq(t.Waiters(lock), 0);
}
END_TEST

// The waiter index follows renames and drops: a renamed waiter is queued
// under its new name only.
START_TEST(waiter_index_follows_rename_and_drop) {
    LockTable t;
    ck_assert(Acquire(t, 4, Holder{1, 1}));
    ck_assert(!Acquire(t, 4, Holder{2, 2}));
    std::vector<uint32_t> held, queued;
    t.Rename(Holder{2, 2}, Holder{3, 9}, &held, &queued);
    ck_assert_uint_eq(queued.size(), 1);
    bool granted = true;
    ck_assert_int_eq(t.Acquire(4, Holder{3, 9}, &granted).code(), DSHM_E_PENDING);
    ck_assert(!Acquire(t, 4, Holder{2, 2}));  // the old name is no waiter any more
    ck_assert_uint_eq(t.TotalWaiters(), 2);
    t.DropClient(Holder{3, 9});
    ck_assert_uint_eq(t.TotalWaiters(), 1);
    ck_assert(!Acquire(t, 4, Holder{3, 9}));
    ck_assert(Is(Release(t, 4, Holder{1, 1}), Holder{2, 2}));
    ck_assert_uint_eq(t.TotalWaiters(), 1);
    // Import keeps the bounds too: a queue longer than allowed is refused.
    std::vector<LockTable::Entry> entries{{0, Holder{1, 0}, 0}};
    for (uint32_t i = 1; i <= LockTable::kMaxWaitersPerLock + 1; i++)
        entries.push_back({0, Holder{2, i}, i});
    LockTable u;
    ck_assert_int_eq(u.Import(entries).code(), DSHM_E_PROTO);
    ck_assert_uint_eq(u.TotalWaiters(), 0);
    entries.pop_back();
    ck_assert(u.Import(entries).ok());
    ck_assert_uint_eq(u.TotalWaiters(), LockTable::kMaxWaitersPerLock);
}
END_TEST

int main() {
    Suite *s = suite_create("hostd/lockq");
    TCase *tc = NewTCase("lockq", 30);
    tcase_add_test(tc, fifo_many_waiters);
    tcase_add_test(tc, error_codes);
    tcase_add_test(tc, drop_client_in_middle_of_queue);
    tcase_add_test(tc, drop_host_with_holders_and_waiters);
    tcase_add_test(tc, locks_are_independent);
    tcase_add_test(tc, rename_keeps_holds_and_positions);
    tcase_add_test(tc, export_import_round_trip);
    tcase_add_test(tc, waiter_bounds);
    tcase_add_test(tc, waiter_index_follows_rename_and_drop);
    suite_add_tcase(s, tc);
    return RunSuite(s);
}
