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
// Thread safety: every function here REQUIRES the loop mutex, i.e. is
// called from a callback or by the thread iterating the default
// GMainContext (before EnableIoThread, that thread only).
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
// starts the I/O thread.  If the thread or its epoll set cannot be had, a
// warning is logged and WatchFdIo() is WatchFd().  Idempotent; cannot be
// undone.
void EnableIoThread();

// As WatchFd(), but after EnableIoThread() the fd is waited for, and `fn`
// run, by the I/O thread (above); before it, this is WatchFd().  RewatchFd
// and UnwatchFd apply as to any watch.
guint WatchFdIo(int fd, GIOCondition cond, GUnixFDSourceFunc fn, gpointer data);

// Changes the conditions of watch `id` (an epoll_ctl, no new watch).
void RewatchFd(guint id, GIOCondition cond);

// Removes watch `id`: its callback is not called again.
void UnwatchFd(guint id);

// Number of live watches (for tests and dshmctl).
size_t WatchCount();

}  // namespace dshm
