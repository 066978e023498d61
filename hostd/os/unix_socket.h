// dshm::os unix stream sockets carrying file descriptors (SCM_RIGHTS): the
// client channel (docs/protocol.md section 1; wire.h: fds are attached to the
// first byte of the message that carries them).
//
// Thread-safety: thin system-call wrappers, no shared state, safe from any
// thread (two threads sending on one socket interleave messages, as with
// plain sendmsg).  Errors are returned as values (see result.h).
#pragma once

#include <cstddef>
#include <vector>

#include "result.h"

namespace dshm::os {

// Most fds RecvWithFds accepts in one call (one message never carries more
// than one fd in the dshm protocol; the margin makes truncation detectable).
inline constexpr size_t kMaxRecvFds = 16;

// Sends all `len` bytes of `buf` on stream socket `sock` (sendmsg with
// MSG_NOSIGNAL: a closed peer yields EPIPE, never SIGPIPE), attaching
// fds[0..nfds) as SCM_RIGHTS to the FIRST chunk only; later chunks of a
// partial write carry no fds.  The fds stay owned by the caller (the kernel
// duplicates them).  len must be >= 1 when nfds > 0.
// If the socket buffer is full (EAGAIN on an O_NONBLOCK socket), waits for
// POLLOUT up to timeout_ms (-1: forever) for each chunk; on ETIMEDOUT or any
// error after a partial write the stream is mid-message: close the socket.
VoidResult SendWithFds(int sock, const void *buf, size_t len, const int *fds, size_t nfds,
                       int timeout_ms = 5000);

// Receives up to `cap` bytes into `buf` with one recvmsg (MSG_CMSG_CLOEXEC),
// appending every SCM_RIGHTS fd received to *fds (the caller owns them; may
// be null, then received fds are closed).  Returns the byte count; 0 means
// end of stream.  On an O_NONBLOCK socket with nothing to read fails with
// EAGAIN.  Never leaks an fd: if the control data was truncated
// (MSG_CTRUNC: more than kMaxRecvFds fds), every fd of this call is closed
// and the call fails with EMSGSIZE (the peer misbehaved: close the socket);
// on any failure *fds is left unchanged.
Result<size_t> RecvWithFds(int sock, void *buf, size_t cap, std::vector<int> *fds);

}  // namespace dshm::os
