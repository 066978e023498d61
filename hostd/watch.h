// watch: readiness of dshmd's file descriptors through epoll sets.
//
// GLib's own fd sources (g_unix_fd_add) are poll()ed all together at every
// iteration of the main loop.  Each wake-up then costs work in proportion to
// every fd dshmd watches, not to the ones that are ready: poll() adds itself
// to, and after the wake-up removes itself from, the wait queue of each fd,
// and GLib runs each source's prepare and check.  dshmd watches two fds per
// attached VM (its socket and its userfaultfd) and one per peer host, and a
// remote fault wakes it twice on the faulting host and once on the owner.
//
// Here every fd dshmd watches goes into one epoll set, and the main loop
// polls the epoll fd alone (one GSource): a wake-up costs the same whether
// dshmd watches 5 fds or 500.  Timers, idles and signal sources stay GLib's.
//
// Semantics are those of g_unix_fd_add() on the default main context:
// level-triggered; the callback gets the fd it was given, the conditions
// that are ready (G_IO_IN, G_IO_OUT as asked; G_IO_HUP and G_IO_ERR whether
// asked or not) and its data; returning G_SOURCE_REMOVE removes the watch.
// At most kMaxEventsPerDispatch watches are dispatched per iteration; the
// others stay ready (level-triggered) and are dispatched at the next one.
//
// Invariants:
// - A watch registers a duplicate of the caller's fd (F_DUPFD_CLOEXEC), and
//   UnwatchFd() deregisters and closes it.  A registration therefore never
//   outlives its watch, even if the caller closes its fd first (an epoll
//   registration lives as long as the open file, which for a userfaultfd
//   is shared with the client process), and one file may be watched twice.
//   The duplicate holds the file open until UnwatchFd(): remove the watch
//   before relying on a close (as with GLib's sources).
// - Ids are never reused; UnwatchFd() of an unknown or removed id does
//   nothing.  A callback may remove any watch, its own included, and add
//   watches; a watch removed during a dispatch is not called afterwards.
// - If the epoll set cannot be created or a fd cannot be added to it (fd
//   limit), the watch falls back to a GLib fd source with the same
//   semantics, and a warning is logged once.
//
// The I/O thread (EnableIoThread): a watch made with WatchFdIo() goes into
// a second epoll set, in which one thread of its own sleeps and runs the
// ready watches' callbacks itself.  A wake-up then goes straight to a
// thread waiting on the file, not through the main loop's poll and GLib's
// dispatch (a blocking remote fault has four wake-ups: bench/README.md).
// dshmd puts every peer connection, client connection and userfaultfd
// there; the main loop keeps timers, idles, signals and listening sockets.
// One thread for all of them, rather than one per fd: on the client host a
// fault's userfaultfd event and the PAGE that answers it are then handled
// by the same thread, as by a bare resolver; that measured 0.88-0.93x the
// remote fault p50 of a thread per fd on our testbed (bench/README.md).
// Callbacks of every kind run one at a time under one mutex, the loop
// mutex: the thread iterating the default GMainContext holds it except
// while it sleeps in poll(), and the I/O thread takes it for its
// callbacks.  Code written for the single thread keeps its meaning: state
// is touched only under the loop mutex, and a callback still runs to its
// end before any other.  The I/O thread never ends; the loop thread holds
// the loop mutex from its last iteration on, so no callback runs after.
//
// Thread safety: every function here REQUIRES(loop_mutex), i.e. is called
// from a callback or by the thread iterating the default GMainContext
// (before EnableIoThread, that thread only).  The loop mutex is a
// capability of clang's thread-safety analysis (thread_annotations.h):
// state it guards is GUARDED_BY(loop_mutex), and a GLib callback, which the
// analysis cannot follow into, begins with loop_mutex.AssertHeld().
#pragma once

#include <glib-unix.h>
#include <glib.h>
#include <pthread.h>

#include <atomic>
#include <cstddef>
#include <mutex>

#include "thread_annotations.h"

namespace dshm {

inline constexpr size_t kMaxEventsPerDispatch = 64;

// The loop mutex (above), as a capability.  Before EnableIoThread() there is
// one thread, the one iterating the default GMainContext: it holds the
// capability without the mutex being locked (nothing to exclude), and
// says so with AssertHeld().  From EnableIoThread() on that thread holds
// the mutex except while it sleeps in poll(), and the I/O thread takes it
// (Lock/Unlock) around its callbacks.  Never destroyed (trivially
// destructible): the I/O thread outlives main().
class CAPABILITY("mutex") LoopMutex {
  public:
    constexpr LoopMutex() = default;
    LoopMutex(const LoopMutex &) = delete;
    LoopMutex &operator=(const LoopMutex &) = delete;

    void Lock() ACQUIRE() {
        mu_.lock();
        locked_once_.store(true, std::memory_order_relaxed);
        owner_.store(pthread_self(), std::memory_order_relaxed);
    }
    void Unlock() RELEASE() {
        owner_.store(0, std::memory_order_relaxed);
        mu_.unlock();
    }
    // What a GLib callback entry point calls first: tells the analysis the
    // caller holds the loop mutex.  Debug builds also check it (two relaxed
    // loads): once the mutex has been locked at all (EnableIoThread), the
    // calling thread must be its owner.  Before that there is one thread.
    void AssertHeld() ASSERT_CAPABILITY(this) {
#ifndef NDEBUG
        if (locked_once_.load(std::memory_order_relaxed) &&
            owner_.load(std::memory_order_relaxed) != pthread_self())
            g_error("the loop mutex is not held by this thread");
#endif
    }

  private:
    std::mutex mu_;
    std::atomic<bool> locked_once_{false};
    // pthread_self() of the holder, 0 when unlocked (pthread_self() is never
    // 0: it is the thread's control block).  Written by the holder only.
    std::atomic<pthread_t> owner_{0};
};

extern LoopMutex loop_mutex;

// Watches `fd` for `cond` (G_IO_IN and/or G_IO_OUT; G_IO_HUP and G_IO_ERR
// are always reported).  Returns the watch id (never 0).
guint WatchFd(int fd, GIOCondition cond, GUnixFDSourceFunc fn, gpointer data)
    REQUIRES(loop_mutex);

// Makes the calling thread (the one that will iterate the default
// GMainContext, which holds the loop mutex as the only thread so far) hold
// it locked from now on, except while it polls, and starts the I/O thread.
// If the thread or its epoll set cannot be had, a warning is logged and
// WatchFdIo() is WatchFd().  Idempotent; cannot be undone.
void EnableIoThread() REQUIRES(loop_mutex);

// As WatchFd(), but after EnableIoThread() the fd is waited for, and `fn`
// run, by the I/O thread (above); before it, this is WatchFd().  RewatchFd
// and UnwatchFd apply as to any watch.
guint WatchFdIo(int fd, GIOCondition cond, GUnixFDSourceFunc fn, gpointer data)
    REQUIRES(loop_mutex);

// Changes the conditions of watch `id` (an epoll_ctl, no new watch).
void RewatchFd(guint id, GIOCondition cond) REQUIRES(loop_mutex);

// Removes watch `id`: its callback is not called again.
void UnwatchFd(guint id) REQUIRES(loop_mutex);

// Number of live watches (for tests and dshmctl).
size_t WatchCount() REQUIRES(loop_mutex);

}  // namespace dshm
