#include "watch.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>
#include <thread>
#include <type_traits>
#include <unordered_map>

namespace dshm {

// Constant-initialized (no order of initialization to get wrong) and never
// destroyed: the I/O thread may still wait for it during exit().
constinit LoopMutex loop_mutex;
static_assert(std::is_trivially_destructible_v<LoopMutex>);

namespace {

// A watch's `dup` is registered in epoll set `ep`: the loop's or, for a
// watch of the I/O thread, the I/O thread's; either way UnwatchFd
// deregisters and closes it at once, under the loop mutex.
struct Watch {
    int fd;        // the caller's, passed to fn
    int dup = -1;  // registered in `ep`; -1 with a fallback
    GIOCondition cond;
    GUnixFDSourceFunc fn;
    gpointer data;
    GSource *fallback = nullptr;  // a GLib fd source when epoll refused
    int ep = -1;                  // the set `dup` is in (the loop's or the I/O thread's)
};

struct Watcher {
    bool io_enabled GUARDED_BY(loop_mutex) = false;  // EnableIoThread() was called
    // The I/O thread's epoll set; -1: no I/O thread.  Written once, before
    // the I/O thread starts (which gets its own copy).
    int io_ep GUARDED_BY(loop_mutex) = -1;
    int epfd GUARDED_BY(loop_mutex) = -1;
    bool epoll_failed GUARDED_BY(loop_mutex) = false;  // every watch falls back
    bool warned GUARDED_BY(loop_mutex) = false;        // WarnOnce
    bool warned_io GUARDED_BY(loop_mutex) = false;     // WarnNoIoThread
    GSource *source GUARDED_BY(loop_mutex) = nullptr;
    guint next_id GUARDED_BY(loop_mutex) = 1;
    std::unordered_map<guint, Watch> watches GUARDED_BY(loop_mutex);
};

// The table itself; its members are guarded by the loop mutex.
Watcher &W() {
    static auto *w = new Watcher;  // never destroyed: the I/O thread outlives main()
    return *w;
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

epoll_event EventFor(guint id, GIOCondition cond) {
    epoll_event ev = {};
    ev.events = ToEpoll(cond);
    ev.data.u64 = id;
    return ev;
}

// Registers a duplicate of `fd` under `id` in epoll set `set` and returns
// it; or returns -1 with errno set, nothing left open.
int AddDup(int set, int fd, guint id, GIOCondition cond) {
    const int dup = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dup < 0)
        return -1;
    epoll_event ev = EventFor(id, cond);
    if (epoll_ctl(set, EPOLL_CTL_ADD, dup, &ev) < 0) {
        const int err = errno;
        close(dup);
        errno = err;
        return -1;
    }
    return dup;
}

// Logs, the first time only per `warned`, that `what` failed and what the
// watch does `instead`.
void Warn(bool *warned, const char *what, int err, const char *instead) {
    if (*warned)
        return;
    *warned = true;
    g_warning("fd watches: %s: %s; %s", what, strerror(err), instead);
}

void WarnOnce(const char *what, int err) REQUIRES(loop_mutex) {
    Warn(&W().warned, what, err,
         "falling back to GLib's poll() for such fds (each wake-up then costs more per watched "
         "fd)");
}

// The I/O thread could not be had, or a fd into its set: such fds go to
// the loop's epoll set instead.
void WarnNoIoThread(const char *what, int err) REQUIRES(loop_mutex) {
    Warn(&W().warned_io, what, err,
         "such fds are watched by the main loop instead of the I/O thread");
}

// Runs one watch's callback; removes the watch if the callback says so.
// The watch is looked up again by id: an earlier callback of the same
// dispatch may have removed it.
void Call(guint id, GIOCondition ready) REQUIRES(loop_mutex) {
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
    loop_mutex.AssertHeld();
    epoll_event evs[kMaxEventsPerDispatch];
    const int n = epoll_wait(W().epfd, evs, kMaxEventsPerDispatch, 0);
    for (int i = 0; i < n; i++)
        Call(static_cast<guint>(evs[i].data.u64), FromEpoll(evs[i].events));
    return G_SOURCE_CONTINUE;
}

GSourceFuncs kEpollFuncs = {nullptr, nullptr, EpollDispatch, nullptr, nullptr, nullptr};

gboolean FallbackDispatch(gint, GIOCondition ready, gpointer id) {
    loop_mutex.AssertHeld();
    Call(GPOINTER_TO_UINT(id), ready);
    // Call() removed the watch (and destroyed this source) if it ended.
    return G_SOURCE_CONTINUE;
}

bool EnsureEpoll() REQUIRES(loop_mutex) {
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

void AttachFallback(guint id, Watch *wt) REQUIRES(loop_mutex) {
    wt->fallback = g_unix_fd_source_new(wt->fd, wt->cond);
    g_source_set_callback(wt->fallback,
                          reinterpret_cast<GSourceFunc>(
                              reinterpret_cast<void (*)()>(&FallbackDispatch)),
                          GUINT_TO_POINTER(id), nullptr);
    g_source_set_can_recurse(wt->fallback, TRUE);
    g_source_attach(wt->fallback, nullptr);
}

void DetachFallback(Watch *wt) REQUIRES(loop_mutex) {
    g_source_destroy(wt->fallback);
    g_source_unref(wt->fallback);
    wt->fallback = nullptr;
}

// The default context's poll function once the I/O thread is enabled: the
// loop thread holds the loop mutex except while it sleeps here.  (GLib
// calls it through a pointer, so its REQUIRES is checked only here; the
// run-time check stands in for the caller's.)
gint UnlockedPoll(GPollFD *fds, guint n, gint timeout) REQUIRES(loop_mutex) {
    loop_mutex.AssertHeld();
    loop_mutex.Unlock();
    const gint r = g_poll(fds, n, timeout);
    loop_mutex.Lock();
    return r;
}

// The caller holds the loop mutex as the only thread running callbacks (the
// analysis sees it held); from here on it holds it locked.  The analysis
// cannot express "held, now locked as well": hence no analysis here.
void LockForGood() NO_THREAD_SAFETY_ANALYSIS {
    loop_mutex.Lock();
}

// The I/O thread: sleeps in its epoll set, then runs the ready watches'
// callbacks under the loop mutex, as the loop's dispatch does (Call looks
// each id up again: a watch removed since epoll_wait returned, even one
// whose fd number was reused since, is skipped).  It never ends: the
// thread that iterates the loop holds the loop mutex from the end of its
// last iteration to exit(), so this thread cannot run a callback after
// the daemon has gone.
void IoMain(int ep) EXCLUDES(loop_mutex) {
    for (;;) {
        epoll_event evs[kMaxEventsPerDispatch];
        const int n = epoll_wait(ep, evs, kMaxEventsPerDispatch, -1);
        loop_mutex.Lock();
        for (int i = 0; i < n; i++)  // n < 0: EINTR
            Call(static_cast<guint>(evs[i].data.u64), FromEpoll(evs[i].events));
        loop_mutex.Unlock();
    }
}

}  // namespace

void EnableIoThread() {
    Watcher &w = W();
    if (w.io_enabled)
        return;
    w.io_enabled = true;
    LockForGood();
    g_main_context_set_poll_func(nullptr, &UnlockedPoll);
    const int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) {
        WarnNoIoThread("epoll_create1", errno);
        return;
    }
    try {
        std::thread(IoMain, ep).detach();
    } catch (const std::system_error &e) {
        WarnNoIoThread("starting a thread", e.code().value());
        close(ep);
        return;
    }
    w.io_ep = ep;
}

guint WatchFdIo(int fd, GIOCondition cond, GUnixFDSourceFunc fn, gpointer data) {
    Watcher &w = W();
    if (w.io_ep < 0)
        return WatchFd(fd, cond, fn, data);
    const guint id = w.next_id;
    const int dup = AddDup(w.io_ep, fd, id, cond);
    if (dup < 0) {
        WarnNoIoThread("adding a fd to its epoll set", errno);
        return WatchFd(fd, cond, fn, data);
    }
    // In the table before this returns; the I/O thread, which may see the
    // fd ready at once, waits for the loop mutex, which the caller holds.
    w.next_id++;
    w.watches.emplace(id, Watch{fd, dup, cond, fn, data, nullptr, w.io_ep});
    return id;
}

guint WatchFd(int fd, GIOCondition cond, GUnixFDSourceFunc fn, gpointer data) {
    Watcher &w = W();
    const guint id = w.next_id++;
    Watch wt{fd, -1, cond, fn, data, nullptr, -1};
    if (EnsureEpoll()) {
        wt.dup = AddDup(w.epfd, fd, id, cond);
        // EPERM: a file epoll cannot watch (a regular file); poll() reports
        // it always ready, as GLib would.
        if (wt.dup >= 0)
            wt.ep = w.epfd;
        else if (errno != EPERM)
            WarnOnce("adding a fd to the epoll set", errno);
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
    // (An epoll_wait under way in the I/O thread sees the change at once.)
    epoll_event ev = EventFor(id, cond);
    if (epoll_ctl(wt.ep, EPOLL_CTL_MOD, wt.dup, &ev) < 0) {
        // Cannot happen for a registered dup; keep the watch working.
        WarnOnce("changing a watch", errno);
        epoll_ctl(wt.ep, EPOLL_CTL_DEL, wt.dup, nullptr);
        close(wt.dup);
        wt.dup = -1;
        wt.ep = -1;
        AttachFallback(id, &wt);
    }
}

void UnwatchFd(guint id) {
    Watcher &w = W();
    auto it = w.watches.find(id);
    if (it == w.watches.end())
        return;
    Watch &wt = it->second;
    if (wt.fallback) {
        DetachFallback(&wt);
    } else {
        epoll_ctl(wt.ep, EPOLL_CTL_DEL, wt.dup, nullptr);
        close(wt.dup);
    }
    w.watches.erase(it);
}

size_t WatchCount() {
    return W().watches.size();
}

}  // namespace dshm
