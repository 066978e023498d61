// Unit tests for watch.h: fd watches through one epoll set behave as
// g_unix_fd_add() would (level-triggered, G_SOURCE_REMOVE ends a watch,
// HUP reported unasked), a watch removed during a dispatch is not called, a
// registration never outlives its watch even when the caller closed its fd
// first and the file lives on elsewhere, conditions change in place, one
// file may be watched twice, and a fd epoll refuses falls back to GLib.
// Watches of the I/O thread (WatchFdIo): a watch before EnableIoThread is a
// plain one; after it every such watch's callback runs on one thread, the
// same for all, never while the loop thread is outside its poll (the loop
// mutex); conditions change and the watch ends as for any watch, and its
// duplicate of the fd is closed at once; a watch removed while its fd is
// ready is not called again, even when the next watch reuses the fd
// number.
#include "watch.h"

#include <dirent.h>
#include <glib.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <thread>
#include <vector>

// check.h defines a fail() macro: it must follow the C++ headers.
#include "../tests/unit/check_main.h"

using namespace dshm;

namespace {

struct Pair {
    int a = -1, b = -1;
    Pair() {
        int sv[2];
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        a = sv[0];
        b = sv[1];
    }
    ~Pair() {
        if (a >= 0)
            close(a);
        if (b >= 0)
            close(b);
    }
};

struct Seen {
    int calls = 0;
    unsigned cond = 0;
    gboolean ret = G_SOURCE_CONTINUE;
    guint other = 0;  // removed by the callback, if set
};

gboolean Record(gint, GIOCondition cond, gpointer p) {
    loop_mutex.AssertHeld();
    auto *s = static_cast<Seen *>(p);
    s->calls++;
    s->cond |= cond;
    if (s->other)
        UnwatchFd(s->other);
    return s->ret;
}

// Iterates the default context without blocking, `n` times.
void Spin(int n = 5) {
    for (int i = 0; i < n; i++)
        g_main_context_iteration(nullptr, FALSE);
}

// Iterates the default context, sleeping in its poll (where the loop thread
// lets the I/O thread run) for up to 1 ms at a time, until `done` or
// about `ms` milliseconds.
template <typename Pred>
bool LoopUntil(Pred done, int ms = 2000) {
    guint tick = g_timeout_add(
        1, [](gpointer) -> gboolean { return G_SOURCE_CONTINUE; }, nullptr);
    for (int i = 0; i < ms && !done(); i++)
        g_main_context_iteration(nullptr, TRUE);
    g_source_remove(tick);
    return done();
}

// Lets the I/O thread run for about 50 ms.
void Settle() {
    LoopUntil([] { return false; }, 50);
}

int OpenFds() {
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

struct ThreadSeen {
    std::atomic<int> calls{0};
    std::atomic<unsigned> cond{0};
    std::atomic<bool> off_main{true};     // every call on another thread
    std::atomic<bool> loop_busy{false};   // the loop thread is outside its poll
    std::atomic<bool> overlapped{false};  // a call ran while loop_busy
    std::thread::id main = std::this_thread::get_id();
    std::thread::id last;  // the thread of the latest call
    int drain = -1;  // read one byte from it per call
    gboolean ret = G_SOURCE_CONTINUE;
};

gboolean RecordThreaded(gint, GIOCondition cond, gpointer p) {
    loop_mutex.AssertHeld();  // on the I/O thread too: it holds the mutex here
    auto *s = static_cast<ThreadSeen *>(p);
    if (std::this_thread::get_id() == s->main)
        s->off_main = false;
    if (s->loop_busy)
        s->overlapped = true;
    if (s->drain >= 0) {
        char c;
        (void)!read(s->drain, &c, 1);
    }
    s->cond |= cond;
    s->last = std::this_thread::get_id();
    s->calls++;
    return s->ret;
}

}  // namespace

START_TEST(readable_fd_fires_level_triggered_until_removed) {
    loop_mutex.AssertHeld();  // this thread iterates the loop
    Pair p;
    Seen s;
    const size_t before = WatchCount();
    guint id = WatchFd(p.a, G_IO_IN, &Record, &s);
    ck_assert_uint_ne(id, 0);
    Spin();
    ck_assert_int_eq(s.calls, 0);  // nothing to read yet
    ck_assert_int_eq(write(p.b, "x", 1), 1);
    Spin(3);
    ck_assert_int_ge(s.calls, 3);  // unread: ready again at every iteration
    ck_assert(s.cond & G_IO_IN);
    s.ret = G_SOURCE_REMOVE;
    Spin(3);
    const int at_remove = s.calls;
    Spin(3);
    ck_assert_int_eq(s.calls, at_remove);
    ck_assert_uint_eq(WatchCount(), before);
    UnwatchFd(id);  // removed already: a no-op
}
END_TEST

START_TEST(hup_is_reported_unasked) {
    loop_mutex.AssertHeld();  // this thread iterates the loop
    Pair p;
    Seen s;
    guint id = WatchFd(p.a, G_IO_IN, &Record, &s);
    close(p.b);
    p.b = -1;
    Spin();
    ck_assert(s.cond & G_IO_HUP);
    UnwatchFd(id);
}
END_TEST

START_TEST(watch_removed_during_a_dispatch_is_not_called) {
    loop_mutex.AssertHeld();  // this thread iterates the loop
    Pair p, q;
    Seen s1, s2;
    guint id1 = WatchFd(p.a, G_IO_IN, &Record, &s1);
    guint id2 = WatchFd(q.a, G_IO_IN, &Record, &s2);
    s1.other = id2;  // whichever runs first removes the other
    s2.other = id1;
    ck_assert_int_eq(write(p.b, "x", 1), 1);
    ck_assert_int_eq(write(q.b, "x", 1), 1);
    Spin(1);  // both ready in one epoll_wait
    ck_assert_int_eq(s1.calls + s2.calls, 1);
    UnwatchFd(id1);
    UnwatchFd(id2);
}
END_TEST

START_TEST(registration_does_not_outlive_its_watch) {
    loop_mutex.AssertHeld();  // this thread iterates the loop
    // The file stays open elsewhere (as a userfaultfd stays open in its
    // client) and readable; the caller closes its fd before removing the
    // watch.  After the removal nothing may fire: a stale registration would
    // make the epoll fd readable forever.
    Pair p;
    int elsewhere = dup(p.a);
    Seen s;
    guint id = WatchFd(p.a, G_IO_IN, &Record, &s);
    ck_assert_int_eq(write(p.b, "x", 1), 1);
    close(p.a);
    p.a = -1;
    UnwatchFd(id);
    Spin();
    ck_assert_int_eq(s.calls, 0);
    ck_assert(!g_main_context_iteration(nullptr, FALSE));  // nothing ready at all
    close(elsewhere);
}
END_TEST

START_TEST(conditions_change_in_place) {
    loop_mutex.AssertHeld();  // this thread iterates the loop
    Pair p;
    Seen s;
    guint id = WatchFd(p.a, G_IO_IN, &Record, &s);
    Spin();
    ck_assert_int_eq(s.calls, 0);
    RewatchFd(id, GIOCondition(G_IO_IN | G_IO_OUT));  // a socket with room is writable
    Spin(1);
    ck_assert_int_ge(s.calls, 1);
    ck_assert(s.cond & G_IO_OUT);
    RewatchFd(id, G_IO_IN);
    s.calls = 0;
    s.cond = 0;
    Spin();
    ck_assert_int_eq(s.calls, 0);
    UnwatchFd(id);
}
END_TEST

START_TEST(one_file_watched_twice_fires_both) {
    loop_mutex.AssertHeld();  // this thread iterates the loop
    Pair p;
    Seen s1, s2;
    guint id1 = WatchFd(p.a, G_IO_IN, &Record, &s1);
    guint id2 = WatchFd(p.a, G_IO_IN, &Record, &s2);
    ck_assert_int_eq(write(p.b, "x", 1), 1);
    Spin(1);
    ck_assert_int_eq(s1.calls, 1);
    ck_assert_int_eq(s2.calls, 1);
    UnwatchFd(id1);
    UnwatchFd(id2);
}
END_TEST

START_TEST(many_idle_watches_one_ready) {
    loop_mutex.AssertHeld();  // this thread iterates the loop
    std::vector<Pair> idle(300);
    std::vector<Seen> seen(idle.size());
    std::vector<guint> ids;
    for (size_t i = 0; i < idle.size(); i++)
        ids.push_back(WatchFd(idle[i].a, G_IO_IN, &Record, &seen[i]));
    Pair p;
    Seen s;
    guint id = WatchFd(p.a, G_IO_IN, &Record, &s);
    ck_assert_int_eq(write(p.b, "x", 1), 1);
    Spin(1);
    ck_assert_int_eq(s.calls, 1);
    for (const Seen &o : seen)
        ck_assert_int_eq(o.calls, 0);
    for (guint i : ids)
        UnwatchFd(i);
    UnwatchFd(id);
}
END_TEST

START_TEST(fd_epoll_refuses_falls_back_to_glib) {
    loop_mutex.AssertHeld();  // this thread iterates the loop
    // epoll cannot watch a regular file (EPERM); poll() reports it always
    // ready, and so must the watch.
    FILE *f = tmpfile();
    ck_assert_ptr_nonnull(f);
    Seen s;
    const size_t before = WatchCount();
    guint id = WatchFd(fileno(f), G_IO_IN, &Record, &s);
    ck_assert_uint_eq(WatchCount(), before + 1);
    Spin(2);
    ck_assert_int_ge(s.calls, 1);
    RewatchFd(id, GIOCondition(G_IO_IN | G_IO_OUT));
    s.cond = 0;
    Spin(1);
    ck_assert(s.cond & G_IO_OUT);
    UnwatchFd(id);
    const int at_remove = s.calls;
    Spin(2);
    ck_assert_int_eq(s.calls, at_remove);
    ck_assert_uint_eq(WatchCount(), before);
    fclose(f);
}
END_TEST

START_TEST(io_watch_before_enable_is_a_plain_watch) {
    loop_mutex.AssertHeld();  // this thread iterates the loop
    Pair p;
    ThreadSeen s;
    guint id = WatchFdIo(p.a, G_IO_IN, &RecordThreaded, &s);
    ck_assert_int_eq(write(p.b, "x", 1), 1);
    Spin(1);  // dispatched by this thread's iteration, as WatchFd's
    ck_assert_int_eq(s.calls, 1);
    ck_assert(!s.off_main);
    UnwatchFd(id);
}
END_TEST

START_TEST(io_watch_runs_on_the_io_thread_under_the_loop_mutex) {
    loop_mutex.AssertHeld();  // this thread iterates the loop
    EnableIoThread();
    Pair p;
    ThreadSeen s;
    s.drain = p.a;
    guint id = WatchFdIo(p.a, G_IO_IN, &RecordThreaded, &s);
    // Readable at once, but this thread holds the loop mutex while it
    // is not polling: the callback must wait for the loop's poll.
    s.loop_busy = true;
    ck_assert_int_eq(write(p.b, "x", 1), 1);
    g_usleep(30000);
    ck_assert_int_eq(s.calls, 0);
    s.loop_busy = false;
    ck_assert(LoopUntil([&] { return s.calls == 1; }));
    ck_assert(s.off_main);
    ck_assert(!s.overlapped);
    // Level-triggered, and each new byte is one more call.
    ck_assert_int_eq(write(p.b, "yz", 2), 2);
    ck_assert(LoopUntil([&] { return s.calls == 3; }));
    // G_SOURCE_REMOVE ends it: a later byte is not reported.
    s.ret = G_SOURCE_REMOVE;
    ck_assert_int_eq(write(p.b, "w", 1), 1);
    ck_assert(LoopUntil([&] { return s.calls == 4; }));
    ck_assert_int_eq(write(p.b, "v", 1), 1);
    Settle();
    ck_assert_int_eq(s.calls, 4);
    UnwatchFd(id);  // removed already: a no-op
}
END_TEST

START_TEST(io_watches_share_one_thread) {
    loop_mutex.AssertHeld();  // this thread iterates the loop
    EnableIoThread();
    Pair p, q;
    ThreadSeen s, t;
    s.drain = p.a;
    t.drain = q.a;
    guint a = WatchFdIo(p.a, G_IO_IN, &RecordThreaded, &s);
    guint b = WatchFdIo(q.a, G_IO_IN, &RecordThreaded, &t);
    ck_assert_int_eq(write(p.b, "x", 1), 1);
    ck_assert(LoopUntil([&] { return s.calls == 1; }));
    ck_assert_int_eq(write(q.b, "x", 1), 1);
    ck_assert(LoopUntil([&] { return t.calls == 1; }));
    ck_assert(s.off_main && t.off_main);
    // (the I/O thread's id is stable: both watches ran on it)
    ck_assert(s.last == t.last);
    UnwatchFd(a);
    UnwatchFd(b);
}
END_TEST

START_TEST(io_watch_rewatch_unwatch_and_its_fds) {
    loop_mutex.AssertHeld();  // this thread iterates the loop
    EnableIoThread();
    Pair p;
    ThreadSeen s;
    const int fds_before = OpenFds();
    const size_t before = WatchCount();
    guint id = WatchFdIo(p.a, G_IO_IN, &RecordThreaded, &s);
    ck_assert_uint_eq(WatchCount(), before + 1);
    ck_assert_int_eq(OpenFds(), fds_before + 1);  // its dup, nothing else
    Settle();
    ck_assert_int_eq(s.calls, 0);
    RewatchFd(id, GIOCondition(G_IO_IN | G_IO_OUT));  // a socket with room is writable
    ck_assert(LoopUntil([&] { return s.calls > 0; }));
    ck_assert(s.cond & G_IO_OUT);
    RewatchFd(id, G_IO_IN);
    Settle();  // a call in flight finishes
    const int calls = s.calls;
    Settle();
    ck_assert_int_eq(s.calls, calls);
    // Removed while readable: never called again, and its dup is closed
    // at once.  A new watch that gets the same fd number is not handed
    // the old one's event.
    ck_assert_int_eq(write(p.b, "x", 1), 1);
    UnwatchFd(id);
    ck_assert_uint_eq(WatchCount(), before);
    ck_assert_int_eq(OpenFds(), fds_before);
    Pair q;  // (not readable)
    ThreadSeen t;
    guint id2 = WatchFdIo(q.a, G_IO_IN, &RecordThreaded, &t);
    Settle();
    ck_assert_int_eq(s.calls, calls);
    ck_assert_int_eq(t.calls, 0);
    UnwatchFd(id2);
}
END_TEST

// AssertHeld() on a thread that does not hold the loop mutex, once it is
// locked at all, ends the process (debug builds; in a child: whatever
// CK_FORK says; its "ERROR **: the loop mutex is not held" line is expected).
START_TEST(assert_held_off_the_holder_aborts) {
    loop_mutex.AssertHeld();  // this thread iterates the loop
    const pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        EnableIoThread();
        loop_mutex.AssertHeld();  // the holder: passes
        std::thread([] { loop_mutex.AssertHeld(); }).join();
        _exit(0);
    }
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
#ifdef NDEBUG
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
#else
    ck_assert(WIFSIGNALED(status));
#endif
}
END_TEST

int main() {
    Suite *s = suite_create("hostd/watch");
    TCase *tc = NewTCase("watch", 30);
    tcase_add_test(tc, readable_fd_fires_level_triggered_until_removed);
    tcase_add_test(tc, hup_is_reported_unasked);
    tcase_add_test(tc, watch_removed_during_a_dispatch_is_not_called);
    tcase_add_test(tc, registration_does_not_outlive_its_watch);
    tcase_add_test(tc, conditions_change_in_place);
    tcase_add_test(tc, one_file_watched_twice_fires_both);
    tcase_add_test(tc, many_idle_watches_one_ready);
    tcase_add_test(tc, fd_epoll_refuses_falls_back_to_glib);
    tcase_add_test(tc, io_watch_before_enable_is_a_plain_watch);
    suite_add_tcase(s, tc);
    // After every plain-watch test: EnableIoThread cannot be undone (it
    // matters when CK_FORK=no runs every test in one process).
    TCase *tt = NewTCase("io-thread", 30);
    tcase_add_test(tt, io_watch_runs_on_the_io_thread_under_the_loop_mutex);
    tcase_add_test(tt, io_watches_share_one_thread);
    tcase_add_test(tt, io_watch_rewatch_unwatch_and_its_fds);
    tcase_add_test(tt, assert_held_off_the_holder_aborts);
    suite_add_tcase(s, tt);
    return RunSuite(s);
}
