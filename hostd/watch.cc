#include "watch.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <system_error>
#include <thread>
#include <unordered_map>

namespace dshm {

namespace {

// A threaded watch's thread owns its dup, `wake` and `ep` and closes them
// when it ends; it learns that the watch ended from the table (under the
// loop mutex), as the loop does.  RewatchFd changes its conditions in `ep`.
struct Watch {
    int fd;           // the caller's, passed to fn
    int dup = -1;     // registered in the epoll set (or a waiter thread's); -1 with a fallback
    GIOCondition cond;
    GUnixFDSourceFunc fn;
    gpointer data;
    GSource *fallback = nullptr;  // a GLib fd source when epoll refused
    int wake = -1;                // a threaded watch: its thread's eventfd (the watch ended)
    int ep = -1;                  // a threaded watch: its thread's epoll set (dup and wake)
};

struct Watcher {
    bool threads = false;  // EnableWaiterThreads() was called
    int epfd = -1;
    bool epoll_failed = false;  // epoll_create1 failed: every watch falls back
    bool warned = false;
    GSource *source = nullptr;
    guint next_id = 1;
    std::unordered_map<guint, Watch> watches;
};

Watcher &W() {
    static Watcher w;
    return w;
}

// GLib's conditions and epoll's events, pair by pair (HUP and ERR epoll
// reports unasked).
constexpr struct {
    unsigned glib;
    uint32_t epoll;
} kConds[] = {{G_IO_IN, EPOLLIN},
              {G_IO_OUT, EPOLLOUT},
              {G_IO_PRI, EPOLLPRI},
              {G_IO_HUP, EPOLLHUP},
              {G_IO_ERR, EPOLLERR}};

uint32_t ToEpoll(GIOCondition cond) {
    uint32_t ev = 0;
    for (const auto &c : kConds)
        ev |= (cond & c.glib) ? c.epoll : 0;
    return ev;
}

GIOCondition FromEpoll(uint32_t ev) {
    unsigned cond = 0;
    for (const auto &c : kConds)
        cond |= (ev & c.epoll) ? c.glib : 0;
    return GIOCondition(cond);
}

// Logs, the first time only per `warned`, that `what` failed and what the
// watch does `instead`.
void Warn(bool *warned, const char *what, int err, const char *instead) {
    if (*warned)
        return;
    *warned = true;
    g_warning("fd watches: %s: %s; %s", what, strerror(err), instead);
}

void WarnOnce(const char *what, int err) {
    Warn(&W().warned, what, err,
         "falling back to GLib's poll() for such fds (each wake-up then costs more per watched "
         "fd)");
}

// A waiter thread could not be had: the fd goes into the epoll set instead.
void WarnNoThread(const char *what, int err) {
    static bool warned = false;
    Warn(&warned, what, err, "such fds are watched by the main loop instead of a waiter thread");
}

// Runs one watch's callback; removes the watch if the callback says so.
// The watch is looked up again by id: an earlier callback of the same
// dispatch may have removed it.
void Call(guint id, GIOCondition ready) {
    auto it = W().watches.find(id);
    if (it == W().watches.end())
        return;
    const Watch w = it->second;
    const GIOCondition cond = GIOCondition(ready & (w.cond | G_IO_HUP | G_IO_ERR | G_IO_NVAL));
    if (!cond)
        return;
    if (!w.fn(w.fd, cond, w.data))
        UnwatchFd(id);
}

gboolean EpollDispatch(GSource *, GSourceFunc, gpointer) {
    epoll_event evs[kMaxEventsPerDispatch];
    const int n = epoll_wait(W().epfd, evs, kMaxEventsPerDispatch, 0);
    for (int i = 0; i < n; i++)
        Call(static_cast<guint>(evs[i].data.u64), FromEpoll(evs[i].events));
    return G_SOURCE_CONTINUE;
}

GSourceFuncs kEpollFuncs = {nullptr, nullptr, EpollDispatch, nullptr, nullptr, nullptr};

gboolean FallbackDispatch(gint, GIOCondition ready, gpointer id) {
    Call(GPOINTER_TO_UINT(id), ready);
    // Call() removed the watch (and destroyed this source) if it ended.
    return G_SOURCE_CONTINUE;
}

bool EnsureEpoll() {
    Watcher &w = W();
    if (w.epfd >= 0)
        return true;
    if (w.epoll_failed)
        return false;
    w.epfd = epoll_create1(EPOLL_CLOEXEC);
    if (w.epfd < 0) {
        w.epoll_failed = true;
        WarnOnce("epoll_create1", errno);
        return false;
    }
    w.source = g_source_new(&kEpollFuncs, sizeof(GSource));
    g_source_set_name(w.source, "dshm-fd-watches");
    // As GLib's fd sources would be without it, the epoll fd would be taken
    // out of the poll set and put back around each dispatch (two writes of
    // the context's wake-up eventfd per event); dshmd never iterates the
    // loop from inside a callback.
    g_source_set_can_recurse(w.source, TRUE);
    g_source_add_unix_fd(w.source, w.epfd, G_IO_IN);
    g_source_attach(w.source, nullptr);
    return true;
}

void AttachFallback(guint id, Watch *wt) {
    wt->fallback = g_unix_fd_source_new(wt->fd, wt->cond);
    g_source_set_callback(wt->fallback,
                          reinterpret_cast<GSourceFunc>(
                              reinterpret_cast<void (*)()>(&FallbackDispatch)),
                          GUINT_TO_POINTER(id), nullptr);
    g_source_set_can_recurse(wt->fallback, TRUE);
    g_source_attach(wt->fallback, nullptr);
}

void DetachFallback(Watch *wt) {
    g_source_destroy(wt->fallback);
    g_source_unref(wt->fallback);
    wt->fallback = nullptr;
}

std::mutex &Mu() {
    static auto *mu = new std::mutex;  // never destroyed: waiter threads outlive main()
    return *mu;
}

// The default context's poll function once waiter threads are enabled: the
// loop thread holds the loop mutex except while it sleeps here.
gint UnlockedPoll(GPollFD *fds, guint n, gint timeout) {
    Mu().unlock();
    const gint r = g_poll(fds, n, timeout);
    Mu().lock();
    return r;
}

// A threaded watch's thread: sleeps on the file alone (and its eventfd),
// then runs the callback under the loop mutex, as the loop would (Call).
// Ends at its first look after the watch left the table.  It waits in an
// epoll set of its own, made once (WatchFdThreaded): poll() would add
// itself to, and take itself off, the wait queues of both files at every
// wake-up, and look up both files each time (atomically, the process being
// threaded).  That showed in perf of every waiter thread, and a release
// stream, which wakes them hundreds of times, went 1.11-1.13x faster
// without it (bench/README.md).
void WaiterMain(guint id, int dup, int wake, int ep) {
    std::unique_lock lock(Mu());
    while (W().watches.contains(id)) {
        lock.unlock();
        epoll_event evs[2];
        const int n = epoll_wait(ep, evs, 2, -1);
        lock.lock();
        for (int i = 0; i < n; i++) {    // n < 0: EINTR
            if (evs[i].data.u64 == 0) {  // wake (ids are never 0)
                uint64_t v;
                (void)!read(wake, &v, sizeof v);
            } else {
                Call(id, FromEpoll(evs[i].events));  // nothing if it ended meanwhile
            }
        }
    }
    lock.unlock();
    close(ep);
    close(dup);
    close(wake);
}

void WakeWaiter(const Watch &wt) {
    const uint64_t one = 1;
    (void)!write(wt.wake, &one, sizeof one);
}

}  // namespace

void EnableWaiterThreads() {
    Watcher &w = W();
    if (w.threads)
        return;
    w.threads = true;
    Mu().lock();
    g_main_context_set_poll_func(nullptr, &UnlockedPoll);
}

guint WatchFdThreaded(int fd, GIOCondition cond, GUnixFDSourceFunc fn, gpointer data) {
    Watcher &w = W();
    if (!w.threads)
        return WatchFd(fd, cond, fn, data);
    const guint id = w.next_id++;
    const int dup = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    const int wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    const int ep = epoll_create1(EPOLL_CLOEXEC);
    const auto close_all = [&] {
        for (int f : {dup, wake, ep}) {
            if (f >= 0)
                close(f);
        }
    };
    epoll_event on_wake = {}, on_fd = {};
    on_wake.events = EPOLLIN;
    on_wake.data.u64 = 0;
    on_fd.events = ToEpoll(cond);
    on_fd.data.u64 = id;
    if (dup < 0 || wake < 0 || ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, wake, &on_wake) < 0 ||
        epoll_ctl(ep, EPOLL_CTL_ADD, dup, &on_fd) < 0) {
        WarnNoThread("a waiter thread's fds", errno);
        close_all();
        return WatchFd(fd, cond, fn, data);
    }
    // In the table before the thread starts: its first look finds it (the
    // thread waits for the loop mutex, which the caller holds).
    w.watches.emplace(id, Watch{fd, dup, cond, fn, data, nullptr, wake, ep});
    try {
        std::thread(WaiterMain, id, dup, wake, ep).detach();
    } catch (const std::system_error &e) {
        WarnNoThread("starting a thread", e.code().value());
        w.watches.erase(id);
        close_all();
        return WatchFd(fd, cond, fn, data);
    }
    return id;
}

guint WatchFd(int fd, GIOCondition cond, GUnixFDSourceFunc fn, gpointer data) {
    Watcher &w = W();
    const guint id = w.next_id++;
    Watch wt{fd, -1, cond, fn, data, nullptr, -1};
    if (EnsureEpoll()) {
        wt.dup = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (wt.dup < 0) {
            WarnOnce("duplicating a watched fd", errno);
        } else {
            epoll_event ev = {};
            ev.events = ToEpoll(cond);
            ev.data.u64 = id;
            if (epoll_ctl(w.epfd, EPOLL_CTL_ADD, wt.dup, &ev) < 0) {
                // EPERM: a file epoll cannot watch (a regular file); poll()
                // reports it always ready, as GLib would.
                if (errno != EPERM)
                    WarnOnce("adding a fd to the epoll set", errno);
                close(wt.dup);
                wt.dup = -1;
            }
        }
    }
    auto [it, inserted] = w.watches.emplace(id, wt);
    (void)inserted;
    if (it->second.dup < 0)
        AttachFallback(id, &it->second);
    return id;
}

void RewatchFd(guint id, GIOCondition cond) {
    Watcher &w = W();
    auto it = w.watches.find(id);
    if (it == w.watches.end() || it->second.cond == cond)
        return;
    Watch &wt = it->second;
    wt.cond = cond;
    if (wt.fallback) {
        DetachFallback(&wt);
        AttachFallback(id, &wt);
        return;
    }
    // In the loop's epoll set, or in the waiter thread's own (epoll_wait
    // there sees the change at once).
    epoll_event ev = {};
    ev.events = ToEpoll(cond);
    ev.data.u64 = id;
    if (epoll_ctl(wt.ep >= 0 ? wt.ep : w.epfd, EPOLL_CTL_MOD, wt.dup, &ev) < 0) {
        // Cannot happen for a registered dup; keep the watch working.
        WarnOnce("changing a watch", errno);
        if (wt.ep >= 0)
            return;  // (its thread owns dup; its former conditions stay)
        epoll_ctl(w.epfd, EPOLL_CTL_DEL, wt.dup, nullptr);
        close(wt.dup);
        wt.dup = -1;
        AttachFallback(id, &wt);
    }
}

void UnwatchFd(guint id) {
    Watcher &w = W();
    auto it = w.watches.find(id);
    if (it == w.watches.end())
        return;
    Watch &wt = it->second;
    if (wt.wake >= 0) {
        WakeWaiter(wt);  // it ends at its next look; it closes dup, wake and ep
    } else if (wt.fallback) {
        DetachFallback(&wt);
    } else {
        epoll_ctl(w.epfd, EPOLL_CTL_DEL, wt.dup, nullptr);
        close(wt.dup);
    }
    w.watches.erase(it);
}

size_t WatchCount() {
    return W().watches.size();
}

}  // namespace dshm
