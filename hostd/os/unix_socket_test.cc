// Unit tests for unix_socket.h: SCM_RIGHTS fds, partial writes, truncation.
#include "unix_socket.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>
#include <vector>

// check.h defines a fail() macro: it must follow the C++ headers.
#include "../../tests/unit/check_main.h"

using namespace dshm::os;

namespace {

struct Pair {
    UniqueFd a, b;
};

Pair MakePair() {
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    return Pair{UniqueFd(sv[0]), UniqueFd(sv[1])};
}

int CountOpenFds() {
    DIR *d = opendir("/proc/self/fd");
    ck_assert(d != nullptr);
    int n = 0;
    while (readdir(d) != nullptr) {
        n++;
    }
    closedir(d);
    return n;
}

bool SameFile(int a, int b) {
    struct stat sa, sb;
    return fstat(a, &sa) == 0 && fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

}  // namespace

START_TEST(one_fd_roundtrip) {
    Pair p = MakePair();
    int pipefd[2];
    ck_assert_int_eq(pipe2(pipefd, O_CLOEXEC), 0);
    UniqueFd r(pipefd[0]), w(pipefd[1]);
    const char msg[] = "hello";
    ck_assert(SendWithFds(p.a.get(), msg, sizeof msg, &pipefd[1], 1).ok());
    char buf[64];
    std::vector<int> fds;
    auto n = RecvWithFds(p.b.get(), buf, sizeof buf, &fds);
    ck_assert(n.ok());
    ck_assert_uint_eq(*n, sizeof msg);
    ck_assert_str_eq(buf, "hello");
    ck_assert_uint_eq(fds.size(), 1);
    ck_assert(SameFile(fds[0], pipefd[1]));
    ck_assert_int_ne(fcntl(fds[0], F_GETFD) & FD_CLOEXEC, 0);  // MSG_CMSG_CLOEXEC
    // The received fd works: write through it, read from the pipe.
    ck_assert_int_eq(write(fds[0], "x", 1), 1);
    char c = 0;
    ck_assert_int_eq(read(pipefd[0], &c, 1), 1);
    ck_assert_int_eq(c, 'x');
    close(fds[0]);
}
END_TEST

START_TEST(several_and_no_fds) {
    Pair p = MakePair();
    int fds_in[3];
    for (int &f : fds_in) {
        f = open("/dev/null", O_RDONLY | O_CLOEXEC);
        ck_assert_int_ge(f, 0);
    }
    ck_assert(SendWithFds(p.a.get(), "abc", 3, fds_in, 3).ok());
    ck_assert(SendWithFds(p.a.get(), "def", 3, nullptr, 0).ok());
    char buf[3];
    std::vector<int> fds;
    ck_assert_uint_eq(*RecvWithFds(p.b.get(), buf, 3, &fds), 3);
    ck_assert_uint_eq(fds.size(), 3);
    ck_assert_uint_eq(*RecvWithFds(p.b.get(), buf, 3, &fds), 3);
    ck_assert_int_eq(memcmp(buf, "def", 3), 0);
    ck_assert_uint_eq(fds.size(), 3);  // nothing added by the second message
    for (int i = 0; i < 3; i++) {
        ck_assert(SameFile(fds[i], fds_in[i]));
        close(fds[i]);
        close(fds_in[i]);
    }
    // Null fds vector: received fds are closed, not leaked.
    int before = CountOpenFds();
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    ck_assert(SendWithFds(p.a.get(), "z", 1, &devnull, 1).ok());
    close(devnull);
    ck_assert_uint_eq(*RecvWithFds(p.b.get(), buf, 3, nullptr), 1);
    ck_assert_int_eq(CountOpenFds(), before);
}
END_TEST

START_TEST(bad_send_arguments) {
    Pair p = MakePair();
    int fd = 0;
    ck_assert_int_eq(SendWithFds(p.a.get(), "", 0, &fd, 1).err(), EINVAL);
    std::vector<int> many(kMaxRecvFds + 1, 0);
    ck_assert_int_eq(SendWithFds(p.a.get(), "x", 1, many.data(), many.size()).err(), EINVAL);
}
END_TEST

// A message far bigger than the socket buffer on a non-blocking socket:
// SendWithFds waits for POLLOUT and finishes it; the fd arrives once.
START_TEST(partial_writes_complete_fd_once) {
    Pair p = MakePair();
    int sndbuf = 4096;
    ck_assert_int_eq(setsockopt(p.a.get(), SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf), 0);
    ck_assert_int_eq(fcntl(p.a.get(), F_SETFL, O_NONBLOCK), 0);
    std::vector<unsigned char> big(4 << 20);
    for (size_t i = 0; i < big.size(); i++) {
        big[i] = static_cast<unsigned char>(i * 7 + 3);
    }
    std::vector<unsigned char> got;
    std::vector<int> fds;
    bool recv_ok = true;
    std::thread reader([&] {
        std::vector<unsigned char> buf(1000);
        while (got.size() < big.size()) {
            auto n = RecvWithFds(p.b.get(), buf.data(), buf.size(), &fds);
            if (!n.ok() || *n == 0) {
                recv_ok = false;
                return;
            }
            got.insert(got.end(), buf.begin(), buf.begin() + static_cast<long>(*n));
        }
    });
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    VoidResult s = SendWithFds(p.a.get(), big.data(), big.size(), &devnull, 1);
    reader.join();
    close(devnull);
    ck_assert_msg(s.ok(), "%s", s.ok() ? "" : s.error().what.c_str());
    ck_assert(recv_ok);
    ck_assert(got == big);
    ck_assert_uint_eq(fds.size(), 1);
    close(fds[0]);
}
END_TEST

START_TEST(send_times_out_when_peer_never_reads) {
    Pair p = MakePair();
    ck_assert_int_eq(fcntl(p.a.get(), F_SETFL, O_NONBLOCK), 0);
    std::vector<unsigned char> big(8 << 20);
    VoidResult s = SendWithFds(p.a.get(), big.data(), big.size(), nullptr, 0, 100);
    ck_assert_int_eq(s.err(), ETIMEDOUT);
}
END_TEST

// More fds than RecvWithFds accepts: MSG_CTRUNC, EMSGSIZE, nothing leaked.
START_TEST(truncated_control_closes_everything) {
    Pair p = MakePair();
    constexpr size_t kN = kMaxRecvFds + 8;
    int fds_in[kN];
    for (int &f : fds_in) {
        f = open("/dev/null", O_RDONLY | O_CLOEXEC);
        ck_assert_int_ge(f, 0);
    }
    union {
        char buf[CMSG_SPACE(sizeof fds_in)];
        cmsghdr align;
    } control;
    memset(&control, 0, sizeof control);
    char byte = 'q';
    iovec iov{&byte, 1};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof control.buf;
    cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof fds_in);
    memcpy(CMSG_DATA(c), fds_in, sizeof fds_in);
    ck_assert_int_eq(sendmsg(p.a.get(), &msg, 0), 1);
    for (int f : fds_in) {
        close(f);
    }

    int before = CountOpenFds();
    std::vector<int> fds{123456};  // left unchanged on failure
    char buf[8];
    auto n = RecvWithFds(p.b.get(), buf, sizeof buf, &fds);
    ck_assert_int_eq(n.err(), EMSGSIZE);
    ck_assert_uint_eq(fds.size(), 1);
    ck_assert_int_eq(fds[0], 123456);
    ck_assert_int_eq(CountOpenFds(), before);
}
END_TEST

START_TEST(eof_eagain_epipe) {
    Pair p = MakePair();
    char buf[8];
    ck_assert_int_eq(fcntl(p.b.get(), F_SETFL, O_NONBLOCK), 0);
    ck_assert_int_eq(RecvWithFds(p.b.get(), buf, sizeof buf, nullptr).err(), EAGAIN);
    p.a.reset();
    auto n = RecvWithFds(p.b.get(), buf, sizeof buf, nullptr);
    ck_assert(n.ok());
    ck_assert_uint_eq(*n, 0);
    // Peer closed: EPIPE as a value, no SIGPIPE (MSG_NOSIGNAL).
    ck_assert_int_eq(SendWithFds(p.b.get(), "x", 1, nullptr, 0).err(), EPIPE);
}
END_TEST

int main() {
    Suite *s = suite_create("hostd/os/unix_socket");
    TCase *tc = NewTCase("unix_socket", 30);
    tcase_add_test(tc, one_fd_roundtrip);
    tcase_add_test(tc, several_and_no_fds);
    tcase_add_test(tc, bad_send_arguments);
    tcase_add_test(tc, partial_writes_complete_fd_once);
    tcase_add_test(tc, send_times_out_when_peer_never_reads);
    tcase_add_test(tc, truncated_control_closes_everything);
    tcase_add_test(tc, eof_eagain_epipe);
    suite_add_tcase(s, tc);
    return RunSuite(s);
}
