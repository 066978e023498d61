#include "conn.h"

#include <fcntl.h>
#include <glib-unix.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "os/uffd.h"
#include "os/unix_socket.h"

namespace dshm {

namespace {
// Flush(), SendGather(): at most this many iovecs (Flush: bytes) per sendmsg.
constexpr size_t kMaxIov = 256;
constexpr size_t kMaxGather = 1u << 20;
}  // namespace

Conn::Conn(os::UniqueFd fd, Channel channel, Receiver receiver, ClientRole role, std::string label)
    : fd_(std::move(fd)), reader_(channel, receiver, role), label_(std::move(label)) {
    // (Cannot fail for an open fd; if it did, a read would block the loop.)
    if (auto r = os::SetNonBlocking(fd_.get()); !r.ok())
        g_warning("%s: %s", label_.c_str(), r.error().what.c_str());
}

Conn::~Conn() {
    if (watch_)
        UnwatchFd(watch_);
    if (hello_timer_)
        g_source_remove(hello_timer_);
    DropQueues();
}

void Conn::DropQueues() {
    for (auto &o : out_) {
        if (o.fd >= 0)
            close(o.fd);
    }
    out_.clear();
    queued_ = 0;
    for (auto &l : later_) {
        if (l.fd >= 0)
            close(l.fd);
    }
    later_.clear();
    later_bytes_ = 0;
}

void Conn::Start(FrameFn on_frame, CloseFn on_close) {
    if (delivering_) {
        next_on_frame_ = std::move(on_frame);
        next_on_close_ = std::move(on_close);
        have_next_ = true;
        return;
    }
    on_frame_ = std::move(on_frame);
    on_close_ = std::move(on_close);
    UpdateWatch();
}

void Conn::UpdateWatch() {
    if (closed_)
        return;
    // G_IO_OUT also while a drain callback waits: the queue may have been
    // emptied by a Flush outside OnIo, and OnIo is where it is called.
    const bool want_out = !out_.empty() || !later_.empty() || on_drained_;
    GIOCondition want = GIOCondition(G_IO_IN | G_IO_HUP | G_IO_ERR | (want_out ? G_IO_OUT : 0));
    if (watch_)
        RewatchFd(watch_, want);
    else
        watch_ = WatchFdIo(fd_.get(), want, &Conn::OnIo, this);
}

gboolean Conn::OnIo(gint, GIOCondition cond, gpointer p) {
    loop_mutex.AssertHeld();
    auto *self = static_cast<Conn *>(p);
    if (cond & G_IO_OUT) {
        self->Flush();
        // A stream refills as the socket drains (and writes at once: the
        // socket just took data and may take more).
        if (!self->later_.empty() && !self->closed_ && self->queued_ < kStreamQueueBytes)
            self->Refill();
        if (self->on_drained_ && !self->closed_ && self->queued_bytes() <= self->drain_low_) {
            auto fn = std::move(self->on_drained_);
            self->on_drained_ = nullptr;
            self->UpdateWatch();
            fn();
        }
    }
    if (!self->closed_ && (cond & (G_IO_IN | G_IO_HUP | G_IO_ERR)))
        self->ReadSome();
    if (self->closed_) {
        self->watch_ = 0;  // returning FALSE removes the source
        return G_SOURCE_REMOVE;
    }
    return G_SOURCE_CONTINUE;
}

void Conn::ReadSome() {
    // A bounded number of reads per wake-up keeps one busy peer from
    // starving the others.  Each read goes straight into the FrameReader's
    // buffer (no copy in between).
    for (int round = 0; round < kMaxReadsPerWakeup && !closed_; round++) {
        std::vector<int> fds;
        uint8_t *buf = reader_.Prepare(kReadBytes);
        auto r = os::RecvWithFds(fd_.get(), buf, kReadBytes, &fds);
        if (!r.ok()) {
            if (r.err() == EAGAIN || r.err() == EINTR)
                return;
            Close(Status::Proto(label_ + ": read: " + r.error().what));
            return;
        }
        if (*r == 0) {
            for (int fd : fds)
                close(fd);
            Close(Status::OK());
            return;
        }
        bytes_in_ += *r;
        reader_.AddFds(fds);
        reader_.Commit(*r);
        delivering_ = true;
        // The replies to the frames of one read leave together, in as few
        // writes as possible (a run of FETCHes read ahead: its PAGEs).
        Cork();
        while (!closed_) {
            std::optional<Frame> f;
            Status st = reader_.Next(&f);
            if (!st.ok()) {
                delivering_ = false;
                Uncork();
                Fail(st);
                return;
            }
            if (!f)
                break;
            frames_in_++;
            on_frame_(std::move(*f));
            if (have_next_) {
                // Handlers replaced from inside the handler: swap now that
                // it has returned.
                have_next_ = false;
                on_frame_ = std::move(next_on_frame_);
                if (!closed_)
                    on_close_ = std::move(next_on_close_);
            }
        }
        delivering_ = false;
        Uncork();
        if (*r < kReadBytes)
            return;
    }
}

void Conn::Send(std::vector<uint8_t> msg, int fd) {
    if (closed_)
        return;
    if (!later_.empty()) {
        // Behind a stream: keep the order.
        Later l;
        later_bytes_ += msg.size();
        l.msg = std::move(msg);
        if (fd >= 0)
            l.fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        later_.push_back(std::move(l));
        CheckBound();
        return;
    }
    Enqueue(std::move(msg), fd >= 0 ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1);
}

void Conn::SendGather(std::span<const struct iovec> iov) {
    if (closed_)
        return;
    size_t total = 0;
    for (const struct iovec &v : iov)
        total += v.iov_len;
    size_t done = 0;  // bytes of iov written
    size_t first = 0, skip = 0;  // iov[first] is written up to byte skip
    if (out_.empty() && later_.empty() && corked_ == 0) {
        while (done < total) {
            struct iovec v[kMaxIov];
            size_t n = 0;
            for (size_t i = first; i < iov.size() && n < kMaxIov; i++) {
                v[n] = iov[i];
                if (i == first) {
                    v[n].iov_base = static_cast<uint8_t *>(v[n].iov_base) + skip;
                    v[n].iov_len -= skip;
                }
                n++;
            }
            struct msghdr mh = {};
            mh.msg_iov = v;
            mh.msg_iovlen = n;
            const ssize_t w = sendmsg(fd_.get(), &mh, MSG_NOSIGNAL);
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN)
                    break;
                Close(Status::Proto(label_ + ": write: " + strerror(errno)));
                return;
            }
            bytes_out_ += w;
            done += w;
            for (size_t left = static_cast<size_t>(w); left > 0;) {
                const size_t avail = iov[first].iov_len - skip;
                if (left < avail) {
                    skip += left;
                    break;
                }
                left -= avail;
                first++;
                skip = 0;
            }
        }
    }
    if (done < total)
        Send(Gathered(iov, done));
}

std::vector<uint8_t> Gathered(std::span<const struct iovec> iov, size_t skip) {
    size_t total = 0;
    for (const struct iovec &v : iov)
        total += v.iov_len;
    std::vector<uint8_t> out;
    out.reserve(total > skip ? total - skip : 0);
    for (const struct iovec &v : iov) {
        const size_t from = std::min(skip, v.iov_len);
        skip -= from;
        const uint8_t *b = static_cast<const uint8_t *>(v.iov_base);
        out.insert(out.end(), b + from, b + v.iov_len);
    }
    return out;
}

void Conn::SendStream(Producer next) {
    if (closed_)
        return;
    later_.push_back(Later{std::move(next), {}, -1});
    Refill();
}

void Conn::Refill() {
    corked_++;  // one gathered write per kCorkFlushBytes, not one per message
    while (!closed_ && !later_.empty() && queued_ < kStreamQueueBytes) {
        Later &l = later_.front();
        if (l.next) {
            std::optional<std::vector<uint8_t>> m = l.next();
            if (m) {
                Enqueue(std::move(*m), -1);
                continue;
            }
            later_.pop_front();
            continue;
        }
        std::vector<uint8_t> msg = std::move(l.msg);
        const int fd = l.fd;
        later_bytes_ -= msg.size();
        later_.pop_front();
        Enqueue(std::move(msg), fd);
    }
    Uncork();
}

// Takes ownership of `fd` (a dup, or -1).
void Conn::Enqueue(std::vector<uint8_t> msg, int fd) {
    if (closed_) {
        if (fd >= 0)
            close(fd);
        return;
    }
    Out o;
    o.bytes = std::move(msg);
    o.fd = fd;
    queued_ += o.bytes.size();
    out_.push_back(std::move(o));
    if (!CheckBound())
        return;
    if (corked_ ? queued_ >= kCorkFlushBytes : out_.size() == 1)
        Flush();
    UpdateWatch();
}

bool Conn::CheckBound() {
    if (queued_ + later_bytes_ <= kMaxQueuedBytes)
        return true;
    Close(Status::Proto(label_ + ": peer is not reading (output queue over " +
                        std::to_string(kMaxQueuedBytes >> 20) + " MiB)"));
    return false;
}

void Conn::WhenDrained(size_t low_water, std::function<void()> fn) {
    if (closed_)
        return;
    drain_low_ = low_water;
    on_drained_ = std::move(fn);
    UpdateWatch();
}

void Conn::Uncork() {
    if (corked_ > 0 && --corked_ == 0 && !closed_ && !out_.empty())
        Flush();
}

void Conn::Flush() {
    while (!out_.empty() && !closed_) {
        Out &o = out_.front();
        ssize_t n;
        if (o.fd >= 0 && o.off == 0) {
            struct iovec iov = {o.bytes.data(), o.bytes.size()};
            union {
                char buf[CMSG_SPACE(sizeof(int))];
                struct cmsghdr align;
            } u;
            memset(&u, 0, sizeof u);
            struct msghdr mh = {};
            mh.msg_iov = &iov;
            mh.msg_iovlen = 1;
            mh.msg_control = u.buf;
            mh.msg_controllen = sizeof u.buf;
            struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
            c->cmsg_level = SOL_SOCKET;
            c->cmsg_type = SCM_RIGHTS;
            c->cmsg_len = CMSG_LEN(sizeof(int));
            memcpy(CMSG_DATA(c), &o.fd, sizeof(int));
            n = sendmsg(fd_.get(), &mh, MSG_NOSIGNAL);
            if (n > 0) {
                close(o.fd);
                o.fd = -1;
            }
        } else {
            // Gather the queued messages up to the next one carrying an fd
            // (its fd must go with its own first byte) into one sendmsg.
            struct iovec iov[kMaxIov];
            size_t niov = 0, total = 0;
            for (auto it = out_.begin(); it != out_.end() && niov < kMaxIov && total < kMaxGather;
                 ++it) {
                if (it != out_.begin() && it->fd >= 0)
                    break;
                iov[niov].iov_base = it->bytes.data() + it->off;
                iov[niov].iov_len = it->bytes.size() - it->off;
                total += iov[niov].iov_len;
                niov++;
            }
            struct msghdr mh = {};
            mh.msg_iov = iov;
            mh.msg_iovlen = niov;
            n = sendmsg(fd_.get(), &mh, MSG_NOSIGNAL);
        }
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                break;
            Close(Status::Proto(label_ + ": write: " + strerror(errno)));
            return;
        }
        bytes_out_ += n;
        queued_ -= n;
        // Consume n bytes from the front of the queue.
        for (size_t left = static_cast<size_t>(n); left > 0 && !out_.empty();) {
            Out &f = out_.front();
            size_t take = std::min(left, f.bytes.size() - f.off);
            f.off += take;
            left -= take;
            if (f.off == f.bytes.size())
                out_.pop_front();
        }
    }
    UpdateWatch();
}

void Conn::SetHelloDeadline(guint ms) {
    if (hello_timer_)
        g_source_remove(hello_timer_);
    hello_timer_ = g_timeout_add(
        ms,
        [](gpointer p) -> gboolean {
            loop_mutex.AssertHeld();
            auto *self = static_cast<Conn *>(p);
            self->hello_timer_ = 0;
            if (self->reader_.channel() == Channel::kPeer && !self->reader_.authenticated())
                self->Fail(Status::Auth(self->label_ + ": not authenticated in time"));
            else if (self->frames_in_ == 0)
                self->Fail(Status::Proto(self->label_ + ": no complete HELLO in time"));
            return G_SOURCE_REMOVE;
        },
        this);
}

void Conn::Fail(const Status &why, uint16_t ref_type) {
    if (closed_)
        return;
    // Best effort: one non-blocking write of the ERROR, then close.  What
    // is queued goes first (replies corked during a read's delivery).
    auto msg = EncodeError(0, why, ref_type);
    if (!out_.empty())
        Flush();
    if (!closed_ && out_.empty())
        (void)!send(fd_.get(), msg.data(), msg.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    Close(why);
}

void Conn::Close(const Status &why) {
    if (closed_)
        return;
    closed_ = true;
    if (watch_) {
        UnwatchFd(watch_);
        watch_ = 0;
    }
    if (hello_timer_) {
        g_source_remove(hello_timer_);
        hello_timer_ = 0;
    }
    fd_.reset();
    on_drained_ = nullptr;
    DropQueues();
    CloseFn fn = std::move(have_next_ ? next_on_close_ : on_close_);
    on_close_ = nullptr;
    next_on_close_ = nullptr;
    if (fn)
        fn(why);
}

}  // namespace dshm
