// watch: readiness of dshmd's file descriptors through one epoll set.
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
//   The duplicate holds the file open until UnwatchFd() (for a threaded
//   watch, until its thread next runs, moments later): remove the watch
//   before relying on a close (as with GLib's sources).
// - Ids are never reused; UnwatchFd() of an unknown or removed id does
//   nothing.  A callback may remove any watch, its own included, and add
//   watches; a watch removed during a dispatch is not called afterwards.
// - If the epoll set cannot be created or a fd cannot be added to it (fd
//   limit), the watch falls back to a GLib fd source with the same
//   semantics, and a warning is logged once.
//
// Waiter threads (EnableWaiterThreads): a watch made with WatchFdThreaded()
// gets a thread of its own that sleeps on that one fd (in an epoll set of
// its own, made once) and runs the callback itself, so the wake-up goes
// straight to a thread waiting on the file, not through the shared epoll
// set and the main loop (a blocking remote fault has four wake-ups:
// bench/README.md).  Callbacks of every kind then
// run one at a time under one mutex, the loop mutex: the thread iterating
// the default GMainContext holds it except while it sleeps in poll(), and a
// waiter thread takes it for its callback.  Code written for the single
// thread keeps its meaning: state is touched only under the loop mutex, and
// a callback still runs to its end before any other.  A waiter thread
// waits for the fd without the mutex, takes it, and ends at the first look
// after its watch was removed; it closes its duplicate of the fd then.
//
// Thread safety: every function here REQUIRES the loop mutex, i.e. is
// called from a callback or by the thread iterating the default
// GMainContext (before EnableWaiterThreads, that thread only).
#pragma once

#include <glib-unix.h>
#include <glib.h>

#include <cstddef>

namespace dshm {

inline constexpr size_t kMaxEventsPerDispatch = 64;

// Watches `fd` for `cond` (G_IO_IN and/or G_IO_OUT; G_IO_HUP and G_IO_ERR
// are always reported).  Returns the watch id (never 0).
guint WatchFd(int fd, GIOCondition cond, GUnixFDSourceFunc fn, gpointer data);

// Makes the calling thread (the one that will iterate the default
// GMainContext) hold the loop mutex from now on, except while it polls, and
// lets WatchFdThreaded() start threads.  Idempotent; cannot be undone.
void EnableWaiterThreads();

// As WatchFd(), but after EnableWaiterThreads() the fd is waited for by a
// thread of its own (above); before it, or if the thread cannot be started,
// this is WatchFd().  RewatchFd and UnwatchFd apply as to any watch.
guint WatchFdThreaded(int fd, GIOCondition cond, GUnixFDSourceFunc fn, gpointer data);

// Changes the conditions of watch `id` (an epoll_ctl, no new watch).
void RewatchFd(guint id, GIOCondition cond);

// Removes watch `id`: its callback is not called again.
void UnwatchFd(guint id);

// Number of live watches (for tests and dshmctl).
size_t WatchCount();

}  // namespace dshm
