// Conn: one non-blocking stream connection of dshmd (client unix socket or
// peer TCP socket) driven by the GLib main loop.
//
// Input: every byte read goes through a FrameReader (frame.h, the one
// validation boundary); validated frames are handed to the FrameFn in order.
// A protocol error is answered with an ERROR message (best effort) and closes
// the connection.  Output: Send() queues a message and writes as much as the
// socket takes; the rest is written when the socket becomes writable.  A
// message may carry one fd (SCM_RIGHTS on the client channel), attached to
// its first byte.  The queue is bounded (kMaxQueuedBytes): a peer that stops
// reading is disconnected rather than growing dshmd's memory without limit.
//
// Closing: Close() (or EOF, an I/O error, a protocol error) detaches the
// GLib sources at once, closes the socket, and calls the CloseFn exactly
// once.  Handlers may call Close() from inside the FrameFn; no frame is
// delivered after Close().  The owner destroys the Conn later (never from
// inside its own callbacks): use Daemon's deferred deletion.
//
// Thread safety: every member function (the destructor included) and all
// state are REQUIRES / GUARDED_BY(loop_mutex) (watch.h); constructing a
// Conn touches nothing shared.  A Conn is read by the I/O thread once
// EnableIoThread() was called (WatchFdIo), else by the main loop.
#pragma once

#include <glib-unix.h>
#include <glib.h>
#include <sys/uio.h>

#include <deque>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "frame.h"
#include "os/result.h"
#include "thread_annotations.h"
#include "watch.h"

namespace dshm {

// The bytes `iov` gathers, from byte `skip` on, copied into one buffer.
std::vector<uint8_t> Gathered(std::span<const struct iovec> iov, size_t skip = 0);

class Conn {
  public:
    using FrameFn = std::function<void(Frame &&)>;
    using CloseFn = std::function<void(const Status &why)>;

    static constexpr size_t kMaxQueuedBytes = 64u << 20;

    // `fd` must be a connected stream socket; it is made non-blocking.
    Conn(os::UniqueFd fd, Channel channel, Receiver receiver, ClientRole role, std::string label);
    ~Conn() REQUIRES(loop_mutex);
    Conn(const Conn &) = delete;
    Conn &operator=(const Conn &) = delete;

    // Starts reading, or replaces the handlers of a started connection.  May
    // be called from inside the FrameFn: the new handlers take over from the
    // next frame on (the running handler is not destroyed while it runs).
    // REQUIRES: not closed.
    void Start(FrameFn on_frame, CloseFn on_close) REQUIRES(loop_mutex);

    // Queues one encoded message; `fd` (>= 0) is duplicated by the kernel
    // when sent and stays owned by the caller... until this call returns: it
    // is dup()ed here.  Does nothing once closed.
    void Send(std::vector<uint8_t> msg, int fd = -1) REQUIRES(loop_mutex);

    // Queues the bytes `iov` gathers (one or more whole encoded messages)
    // without taking them over: their memory need only stay valid during
    // this call.  When nothing is queued before them they are written at
    // once, straight from `iov` (a release sends rewritten pages from the
    // segment's memory); whatever the socket does not take, or all of it
    // when other bytes are queued first, is copied into the queue.  Same
    // order and bound as Send().  Does nothing once closed.
    void SendGather(std::span<const struct iovec> iov) REQUIRES(loop_mutex);

    // Closes the connection (E_PROTO) if no complete frame has arrived
    // within `ms` (on a peer connection: if it is not authenticated by
    // then): a peer or client that connects and never finishes its HELLO
    // does not hold a connection forever.
    void SetHelloDeadline(guint ms) REQUIRES(loop_mutex);

    // Batching: between Cork() and Uncork(), Send() only queues (up to
    // kCorkFlushBytes, then it writes what it has); Uncork() writes the
    // queue with as few sendmsg() calls as possible.  Use it around a burst
    // of messages sent from one handler (an ownership move's pages; a
    // release builds its WRITEBACKs into ~256 KiB buffers itself): one
    // gathered write per ~256 KiB instead of one send() (and, with
    // TCP_NODELAY, one TCP segment and one wake-up of the receiver) per
    // message.  Corks nest; the queue bound (kMaxQueuedBytes) is unchanged.
    static constexpr size_t kCorkFlushBytes = 256u << 10;
    void Cork() REQUIRES(loop_mutex) { corked_++; }
    void Uncork() REQUIRES(loop_mutex);

    // A long run of messages produced on demand (a release's write-backs):
    // `next` is called for the next message whenever less than
    // kStreamQueueBytes are queued, until it returns std::nullopt.  Order is
    // kept: messages Sent (or streams started) later go out after this
    // stream's last message.  `next` must not call into this Conn.  A closed
    // connection destroys pending producers without calling them.
    static constexpr size_t kStreamQueueBytes = 8u << 20;
    using Producer = std::function<std::optional<std::vector<uint8_t>>()>;
    void SendStream(Producer next) REQUIRES(loop_mutex);

    // Flow control for a long stream of messages (an ownership snapshot):
    // calls `fn` once, from the main loop, when the output queue has drained
    // to `low_water` bytes or less.  Replaces an earlier registration; a
    // closed connection never calls it.  `fn` may Send() and register again.
    // It is called from the main loop even when the queue is below
    // low_water already, or is emptied by a write outside the main loop.
    void WhenDrained(size_t low_water, std::function<void()> fn) REQUIRES(loop_mutex);
    // Bytes waiting to be written (not counting streams not produced yet).
    size_t queued_bytes() const REQUIRES(loop_mutex) { return queued_ + later_bytes_; }

    // Sends an ERROR for `why` (best effort) and closes.
    void Fail(const Status &why, uint16_t ref_type = 0) REQUIRES(loop_mutex);

    // Closes now; calls the CloseFn once.  Idempotent.
    void Close(const Status &why) REQUIRES(loop_mutex);

    bool closed() const REQUIRES(loop_mutex) { return closed_; }
    const std::string &label() const REQUIRES(loop_mutex) { return label_; }
    void set_label(std::string l) REQUIRES(loop_mutex) { label_ = std::move(l); }
    ClientRole role() const REQUIRES(loop_mutex) { return reader_.role(); }
    // A peer connection whose AUTH_PROOF was just delivered and verified:
    // its reader accepts the peer's other messages from now on (frame.h).
    void SetAuthenticated() REQUIRES(loop_mutex) { reader_.SetAuthenticated(); }
    bool authenticated() const REQUIRES(loop_mutex) { return reader_.authenticated(); }
    uint64_t bytes_in() const REQUIRES(loop_mutex) { return bytes_in_; }
    uint64_t bytes_out() const REQUIRES(loop_mutex) { return bytes_out_; }

  private:
    struct Out {
        std::vector<uint8_t> bytes;
        size_t off = 0;
        int fd = -1;  // owned dup, sent with the first byte
    };
    // Input: at most kMaxReadsPerWakeup reads of up to kReadBytes each per
    // main-loop wake-up.
    static constexpr size_t kReadBytes = 256u << 10;
    static constexpr int kMaxReadsPerWakeup = 8;
    // The watch's callback (GLib or the I/O thread): asserts the loop mutex.
    static gboolean OnIo(gint fd, GIOCondition cond, gpointer self);
    void ReadSome() REQUIRES(loop_mutex);
    void Flush() REQUIRES(loop_mutex);
    // Moves messages from later_ to out_ while under kStreamQueueBytes.
    void Refill() REQUIRES(loop_mutex);
    void Enqueue(std::vector<uint8_t> msg, int fd) REQUIRES(loop_mutex);
    // Closes the connection (and returns false) when the queued bytes are
    // over kMaxQueuedBytes.
    bool CheckBound() REQUIRES(loop_mutex);
    // Closes the fds of queued messages and empties the queues.
    void DropQueues() REQUIRES(loop_mutex);
    void UpdateWatch() REQUIRES(loop_mutex);

    os::UniqueFd fd_ GUARDED_BY(loop_mutex);
    FrameReader reader_ GUARDED_BY(loop_mutex);
    std::string label_ GUARDED_BY(loop_mutex);
    FrameFn on_frame_ GUARDED_BY(loop_mutex);
    CloseFn on_close_ GUARDED_BY(loop_mutex);
    FrameFn next_on_frame_ GUARDED_BY(loop_mutex);  // set by Start() during delivery
    CloseFn next_on_close_ GUARDED_BY(loop_mutex);
    bool have_next_ GUARDED_BY(loop_mutex) = false;
    guint watch_ GUARDED_BY(loop_mutex) = 0;
    guint hello_timer_ GUARDED_BY(loop_mutex) = 0;
    uint64_t frames_in_ GUARDED_BY(loop_mutex) = 0;
    std::deque<Out> out_ GUARDED_BY(loop_mutex);
    size_t queued_ GUARDED_BY(loop_mutex) = 0;
    // Behind a stream: producers and the messages sent after them, in
    // order.  later_bytes_ counts those messages' bytes (for the bound).
    struct Later {
        Producer next;              // a stream, or
        std::vector<uint8_t> msg;   // one message
        int fd = -1;                // its fd (owned dup)
    };
    std::deque<Later> later_ GUARDED_BY(loop_mutex);
    size_t later_bytes_ GUARDED_BY(loop_mutex) = 0;
    bool closed_ GUARDED_BY(loop_mutex) = false;
    bool delivering_ GUARDED_BY(loop_mutex) = false;
    int corked_ GUARDED_BY(loop_mutex) = 0;
    size_t drain_low_ GUARDED_BY(loop_mutex) = 0;
    std::function<void()> on_drained_ GUARDED_BY(loop_mutex);
    uint64_t bytes_in_ GUARDED_BY(loop_mutex) = 0;
    uint64_t bytes_out_ GUARDED_BY(loop_mutex) = 0;
};

}  // namespace dshm
