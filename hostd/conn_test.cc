// Unit tests for conn.h: streams (SendStream) keep the output queue bounded
// and keep message order; SendGather copies what it cannot write at once; WhenDrained fires once the queue has drained; a
// closed connection drops its producers.  The far end is a plain socket of a
// socketpair, read by a FrameReader as a peer would.
#include "conn.h"

#include <glib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <optional>
#include <vector>

#include "frame.h"

// check.h defines a fail() macro: it must follow the C++ headers.
#include "../tests/unit/check_main.h"

using namespace dshm;

namespace {

std::vector<uint8_t> PageMsg(uint32_t page) {
    dshm_page m = {};
    memcpy(m.segment, "s", 2);
    m.page = page;
    std::vector<uint8_t> data(DSHM_PAGE_SIZE, static_cast<uint8_t>(page * 31));
    return EncodeMsg(DSHM_MSG_PAGE, page, m, data.data(), data.size());
}

// One end wrapped in a Conn, the other read by hand.
struct Pair {
    std::unique_ptr<Conn> conn;
    int far = -1;
    FrameReader reader{Channel::kPeer, Receiver::kDaemon, ClientRole::kUnknown};
    std::vector<uint32_t> pages;  // tags of the PAGE frames received, in order
    size_t bad_data = 0;          // PAGE frames whose data is not PageMsg's
    int closes = 0;
    size_t max_queued = 0;

    Pair() REQUIRES(loop_mutex) {
        int sv[2];
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        int small = 256 << 10;  // a small socket: the queue, not the kernel, holds the data
        setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
        setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
        far = sv[1];
        conn = std::make_unique<Conn>(os::UniqueFd(sv[0]), Channel::kPeer, Receiver::kDaemon,
                                      ClientRole::kUnknown, "test");
        conn->Start([](Frame &&) {}, [this](const Status &) { closes++; });
        dshm_hello h = {};
        h.version = DSHM_PEER_VERSION;
        h.role = DSHM_ROLE_PEER;
        h.host_id = 1;
        conn->Send(EncodeMsg(DSHM_MSG_HELLO, 0, h));
        // The handshake as the reader wants it (the proof is not checked here).
        conn->Send(EncodeMsg(DSHM_MSG_AUTH_CHALLENGE, 0, dshm_auth_challenge{}));
        conn->Send(EncodeMsg(DSHM_MSG_AUTH_PROOF, 0, dshm_auth_proof{}));
    }
    ~Pair() {
        if (far >= 0)
            close(far);
    }
    // Runs the main loop and reads the far end until `want` frames arrived
    // or nothing moves for a while.
    void Pump(size_t want) REQUIRES(loop_mutex) {
        uint8_t buf[64 << 10];
        int idle = 0;
        while (pages.size() < want && idle < 200) {
            while (g_main_context_iteration(nullptr, FALSE)) {
            }
            max_queued = std::max(max_queued, conn->queued_bytes());
            ssize_t n = recv(far, buf, sizeof buf, MSG_DONTWAIT);
            if (n <= 0) {
                idle++;
                g_usleep(1000);
                continue;
            }
            idle = 0;
            reader.Feed(buf, static_cast<size_t>(n));
            for (;;) {
                std::optional<Frame> f;
                Status st = reader.Next(&f);
                ck_assert_msg(st.ok(), "%s", st.ToString().c_str());
                if (!f)
                    break;
                if (f->hdr.type == DSHM_MSG_AUTH_PROOF)
                    reader.SetAuthenticated();
                if (f->hdr.type != DSHM_MSG_PAGE)
                    continue;
                pages.push_back(f->hdr.tag);
                const auto data = f->Extra(sizeof(dshm_page));
                const auto fill = static_cast<uint8_t>(f->hdr.tag * 31);
                if (data.size() != DSHM_PAGE_SIZE ||
                    std::any_of(data.begin(), data.end(), [&](uint8_t b) { return b != fill; }))
                    bad_data++;
            }
        }
    }
};

}  // namespace

START_TEST(stream_is_bounded_and_ordered) {
    loop_mutex.AssertHeld();  // this thread iterates the loop
    Pair p;
    // 100 MiB of pages: far over kMaxQueuedBytes if it were queued at once.
    const uint32_t n = (100u << 20) / DSHM_PAGE_SIZE;
    auto next = std::make_shared<uint32_t>(1);
    p.conn->Send(PageMsg(0));
    p.conn->SendStream([next, last = n]() -> std::optional<std::vector<uint8_t>> {
        if (*next > last)
            return std::nullopt;
        return PageMsg((*next)++);
    });
    p.conn->Send(PageMsg(n + 1));  // behind the stream
    const size_t bound = Conn::kStreamQueueBytes + 2 * (DSHM_PAGE_SIZE + 64);
    ck_assert_uint_le(p.conn->queued_bytes(), bound);
    p.Pump(n + 2);
    ck_assert_int_eq(p.closes, 0);
    ck_assert(!p.conn->closed());
    ck_assert_uint_eq(p.pages.size(), n + 2);
    for (uint32_t i = 0; i < p.pages.size(); i++)
        ck_assert_uint_eq(p.pages[i], i);
    ck_assert_uint_le(p.max_queued, bound);
    ck_assert_uint_eq(p.conn->queued_bytes(), 0);
}
END_TEST

// SendGather: written at once from the caller's memory when nothing is
// queued; what the (small) socket does not take is copied, so the caller
// may reuse its buffers at once; order with Send() before and after kept.
START_TEST(gather_copies_what_it_cannot_write_and_keeps_order) {
    loop_mutex.AssertHeld();  // this thread iterates the loop
    Pair p;
    p.conn->Send(PageMsg(0));
    p.Pump(1);  // the queue is empty again: the first gathers are written directly
    ck_assert_uint_eq(p.conn->queued_bytes(), 0);
    const uint32_t n = 1024, per_call = 64;  // 4 MiB: far more than the socket takes
    for (uint32_t i = 1; i <= n; i += per_call) {
        // Each message in two pieces (header, data) from separate buffers.
        std::vector<std::vector<uint8_t>> bufs;
        std::vector<struct iovec> iov;
        for (uint32_t k = i; k < i + per_call; k++) {
            const std::vector<uint8_t> m = PageMsg(k);
            const size_t split = m.size() - DSHM_PAGE_SIZE;
            bufs.emplace_back(m.begin(), m.begin() + split);
            bufs.emplace_back(m.begin() + split, m.end());
        }
        for (auto &b : bufs)
            iov.push_back({b.data(), b.size()});
        p.conn->SendGather(iov);
        for (auto &b : bufs)
            std::fill(b.begin(), b.end(), 0xee);  // the caller's memory is free again
    }
    ck_assert_uint_gt(p.conn->queued_bytes(), 0);  // the socket did not take it all
    p.conn->Send(PageMsg(n + 1));
    p.Pump(n + 2);
    ck_assert_int_eq(p.closes, 0);
    ck_assert_uint_eq(p.pages.size(), n + 2);
    for (uint32_t i = 0; i < p.pages.size(); i++)
        ck_assert_uint_eq(p.pages[i], i);
    ck_assert_uint_eq(p.bad_data, 0);
    ck_assert_uint_eq(p.conn->queued_bytes(), 0);
}
END_TEST

START_TEST(when_drained_fires_once_below_low_water) {
    loop_mutex.AssertHeld();  // this thread iterates the loop
    Pair p;
    for (uint32_t i = 0; i < 2048; i++)  // 8 MiB
        p.conn->Send(PageMsg(i));
    ck_assert_uint_gt(p.conn->queued_bytes(), 1u << 20);
    int calls = 0;
    size_t at_call = 0;
    p.conn->WhenDrained(1u << 20, [&] {
        loop_mutex.AssertHeld();  // a Conn callback (the analysis cannot see its caller)
        calls++;
        at_call = p.conn->queued_bytes();
    });
    p.Pump(2048);
    ck_assert_uint_eq(p.pages.size(), 2048);
    ck_assert_int_eq(calls, 1);
    ck_assert_uint_le(at_call, 1u << 20);
}
END_TEST

START_TEST(when_drained_fires_after_a_flush_outside_the_loop) {
    loop_mutex.AssertHeld();  // this thread iterates the loop
    Pair p;
    for (uint32_t i = 0; i < 2048; i++)  // 8 MiB
        p.conn->Send(PageMsg(i));
    int calls = 0;
    p.conn->WhenDrained(1u << 20, [&] { calls++; });
    // The queue empties through writes made by a handler (Uncork), not by
    // the main loop's writable callback; the far end reads without it.
    uint8_t buf[64 << 10];
    for (int i = 0; i < 100000 && p.conn->queued_bytes() > 0; i++) {
        while (recv(p.far, buf, sizeof buf, MSG_DONTWAIT) > 0) {
        }
        p.conn->Cork();
        p.conn->Uncork();
    }
    ck_assert_uint_eq(p.conn->queued_bytes(), 0);
    ck_assert_int_eq(calls, 0);
    for (int i = 0; i < 50 && calls == 0; i++) {
        while (recv(p.far, buf, sizeof buf, MSG_DONTWAIT) > 0) {
        }
        while (g_main_context_iteration(nullptr, FALSE)) {
        }
        g_usleep(1000);
    }
    ck_assert_int_eq(calls, 1);
    // Registered below the low-water mark: called on the next iteration.
    p.conn->WhenDrained(1u << 20, [&] { calls++; });
    for (int i = 0; i < 50 && calls == 1; i++) {
        while (g_main_context_iteration(nullptr, FALSE)) {
        }
        g_usleep(1000);
    }
    ck_assert_int_eq(calls, 2);
}
END_TEST

START_TEST(closed_connection_drops_its_stream) {
    loop_mutex.AssertHeld();  // this thread iterates the loop
    Pair p;
    auto alive = std::make_shared<int>(0);
    std::weak_ptr<int> watch = alive;
    p.conn->SendStream([alive]() -> std::optional<std::vector<uint8_t>> {
        return PageMsg(7);  // endless
    });
    alive.reset();
    ck_assert(!watch.expired());  // the producer holds it
    close(p.far);                 // the peer goes away
    p.far = -1;
    for (int i = 0; i < 200 && !p.conn->closed(); i++) {
        while (g_main_context_iteration(nullptr, FALSE)) {
        }
        g_usleep(1000);
    }
    ck_assert(p.conn->closed());
    ck_assert_int_eq(p.closes, 1);
    ck_assert(watch.expired());  // the producer was destroyed, not called on
    p.conn->Send(PageMsg(8));     // a no-op once closed
    ck_assert_uint_eq(p.conn->queued_bytes(), 0);
}
END_TEST

int main() {
    Suite *s = suite_create("hostd/conn");
    TCase *tc = NewTCase("output", 60);
    tcase_add_test(tc, stream_is_bounded_and_ordered);
    tcase_add_test(tc, gather_copies_what_it_cannot_write_and_keeps_order);
    tcase_add_test(tc, when_drained_fires_once_below_low_water);
    tcase_add_test(tc, when_drained_fires_after_a_flush_outside_the_loop);
    tcase_add_test(tc, closed_connection_drops_its_stream);
    suite_add_tcase(s, tc);
    return RunSuite(s);
}
