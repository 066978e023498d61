// tcp_floor: the TCP floor under the dshm peer channel (one TCP connection
// per pair of hosts, docs/protocol.md section 1): request/reply round-trip
// time (a FETCH is a small request answered by a 4 KiB page) and streaming
// throughput.  Two endpoints, so it runs across network namespaces.
//
//   tcp_floor server --listen ADDR:PORT [--timeout SEC]
//   tcp_floor client --connect ADDR:PORT [--iterations N]
//                    [--mode blocking|busypoll|both] [--request BYTES]
//                    [--reply BYTES] [--throughput BYTES]
//                    [--transfer BYTES --transfer-rounds R] [--timeout SEC]
//
// The server serves exactly ONE client session and exits; it also exits on
// its own (status 2) after --timeout seconds (default 30) whatever happens.
// PORT 0 picks a free port; the server prints
//   tcp_floor listening addr=ADDR port=PORT
// once it listens.  ADDR is numeric (IPv4, or IPv6 in brackets); no name
// lookups, and only the given address is used.
//
// A session is a sequence of phases announced by the client (struct Phase, floor_proto.h),
// so the server always waits the same way as the client:
//   rtt         N x (client sends --request bytes, server answers --reply
//               bytes); the client times each exchange with CLOCK_MONOTONIC
//               (after min(100, N/10) untimed warm-up exchanges);
//   throughput  the client streams BYTES in 64 KiB writes, the server
//               answers 8 bytes (its byte count) after the last one;
//   transfer    what a release moves, without dshm: each side maps an area
//               of BYTES (whole pages) in a segment memfd, as dshmd makes
//               them (shmem, MAP_SHARED);
//               per round the client rewrites its whole area (untimed, as
//               dshm_bench writeback does before each release), then sends
//               it in 256 KiB writes (dshmd's chunk) and waits for 8 bytes;
//               the server receives straight into its area, every byte at
//               its place, and answers.  One copy out of memory that was
//               just written and one into memory that has to take it: the
//               like-for-like floor of a write-back, where `throughput`
//               streams one cache-hot 64 KiB buffer into another (what
//               iperf measures and issue 3's target is set against).  R
//               timed rounds after one warm-up round;
//   end.
// mode=blocking: both sides block in recv/send.  mode=busypoll: both sockets
// are O_NONBLOCK and both sides spin on recv/send.  TCP_NODELAY everywhere.
// Without --reply the client measures reply=4096 and reply=64; without
// --throughput, --transfer and --iterations it runs 10000 iterations; with
// --throughput or --transfer and no --iterations it runs just those phases.
//
// Output (client, stable and grep-able):
//   tcp_rtt mode=blocking req=64 reply=4096 n=10000 p50_us=.. p90_us=.. p99_us=.. mean_us=..
//   tcp_throughput mode=blocking bytes=.. seconds=.. mb_per_s=..   (MB = 10^6 bytes)
//   tcp_transfer mode=blocking bytes=.. rounds=.. mb_per_s=.. p50_ms=.. p99_ms=..
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "floor_proto.h"
#include "os/memfd.h"
#include "stats.h"

namespace {

using dshm::bench::kBlocking;
using dshm::bench::kBusyPoll;
using dshm::bench::kEnd;
using dshm::bench::kRtt;
using dshm::bench::kThroughput;
using dshm::bench::kTransfer;
using dshm::bench::Phase;
constexpr uint32_t kMagic = dshm::bench::kFloorMagic;
using Kind = dshm::bench::FloorKind;
constexpr size_t kStreamChunk = 64 * 1024;
constexpr size_t kTransferChunk = 256 * 1024;  // dshmd's kWritebackChunk
constexpr uint32_t kMaxMsg = 16u << 20;
constexpr uint32_t kMaxTransfer = 1u << 30;

const char *ModeName(uint32_t m) {
    return m == kBusyPoll ? "busypoll" : "blocking";
}

[[noreturn]] void Die(const std::string &msg) {
    fprintf(stderr, "tcp_floor: %s\n", msg.c_str());
    exit(1);
}

[[noreturn]] void DieErrno(const std::string &what) {
    Die(what + ": " + strerror(errno));
}

void OnAlarm(int) {
    static const char msg[] = "tcp_floor: timeout, exiting\n";
    ssize_t ignored = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)ignored;
    _exit(2);
}

void ArmTimeout(unsigned seconds) {
    struct sigaction sa {};
    sa.sa_handler = OnAlarm;
    sigaction(SIGALRM, &sa, nullptr);
    alarm(seconds);
}

uint64_t NowNs() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

addrinfo *Resolve(const std::string &spec, bool passive) {
    std::string err;
    addrinfo *res = dshm::bench::ResolveNumeric(spec, passive, &err);
    if (res == nullptr) {
        Die(err);
    }
    return res;
}

void SetNoDelay(int fd) {
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0) {
        DieErrno("TCP_NODELAY");
    }
}

void SetMode(int fd, uint32_t mode) {
    int fl = fcntl(fd, F_GETFL);
    fl = mode == kBusyPoll ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK);
    if (fcntl(fd, F_SETFL, fl) != 0) {
        DieErrno("fcntl");
    }
}

// Exactly len bytes; in busypoll mode (O_NONBLOCK) spins on EAGAIN.
// Returns false on EOF before the first byte when eof_ok.
bool RecvAll(int fd, void *buf, size_t len, bool eof_ok = false) {
    auto *p = static_cast<char *>(buf);
    size_t done = 0;
    while (done < len) {
        ssize_t n = recv(fd, p + done, len - done, 0);
        if (n > 0) {
            done += static_cast<size_t>(n);
        } else if (n == 0) {
            if (eof_ok && done == 0) {
                return false;
            }
            Die("peer closed the connection");
        } else if (errno != EAGAIN && errno != EINTR) {
            DieErrno("recv");
        }
    }
    return true;
}

void SendAll(int fd, const void *buf, size_t len) {
    const auto *p = static_cast<const char *>(buf);
    size_t done = 0;
    while (done < len) {
        ssize_t n = send(fd, p + done, len - done, MSG_NOSIGNAL);
        if (n > 0) {
            done += static_cast<size_t>(n);
        } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
            DieErrno("send");
        }
    }
}

// BYTES of a segment memfd (dshmd's own CreateSegmentMemfd) mapped
// MAP_SHARED and populated, as a written segment's pages are.
class ShmemArea {
  public:
    explicit ShmemArea(size_t bytes) : size_(bytes) {
        auto fd = dshm::os::CreateSegmentMemfd("tcp-floor", bytes);
        if (!fd.ok()) {
            Die("transfer area: " + fd.error().what);
        }
        void *m =
            mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd->get(), 0);
        if (m == MAP_FAILED) {
            DieErrno("mmap");
        }
        base_ = static_cast<uint8_t *>(m);
        memset(base_, 0, bytes);
    }
    ~ShmemArea() { munmap(base_, size_); }
    ShmemArea(const ShmemArea &) = delete;
    ShmemArea &operator=(const ShmemArea &) = delete;
    uint8_t *data() { return base_; }
    size_t size() const { return size_; }

  private:
    uint8_t *base_ = nullptr;
    size_t size_;
};

// ---- server ------------------------------------------------------------------

int Server(const std::string &listen_spec, unsigned timeout) {
    ArmTimeout(timeout);
    addrinfo *ai = Resolve(listen_spec, true);
    int lfd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0) {
        DieErrno("socket");
    }
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(lfd, ai->ai_addr, ai->ai_addrlen) != 0) {
        DieErrno("bind " + listen_spec);
    }
    freeaddrinfo(ai);
    if (listen(lfd, 1) != 0) {
        DieErrno("listen");
    }
    sockaddr_storage ss{};
    socklen_t sl = sizeof ss;
    getsockname(lfd, reinterpret_cast<sockaddr *>(&ss), &sl);
    char host[INET6_ADDRSTRLEN] = "?";
    char port[16] = "?";
    getnameinfo(reinterpret_cast<sockaddr *>(&ss), sl, host, sizeof host, port, sizeof port,
                NI_NUMERICHOST | NI_NUMERICSERV);
    printf("tcp_floor listening addr=%s port=%s\n", host, port);
    fflush(stdout);

    int fd = accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
        DieErrno("accept");
    }
    close(lfd);  // one session only
    SetNoDelay(fd);

    std::vector<char> req, reply, stream(kStreamChunk);
    for (;;) {
        SetMode(fd, kBlocking);
        Phase ph;
        if (!RecvAll(fd, &ph, sizeof ph, true)) {
            break;  // client went away between phases
        }
        const uint32_t max_request = ph.kind == kTransfer ? kMaxTransfer : kMaxMsg;
        if (ph.magic != kMagic || ph.request == 0 || ph.request > max_request ||
            ph.reply > kMaxMsg || ph.mode > kBusyPoll) {
            Die("bad phase header from client");
        }
        if (ph.kind == kEnd) {
            break;
        }
        SetMode(fd, ph.mode);
        if (ph.kind == kRtt) {
            req.resize(ph.request);
            reply.assign(ph.reply, 'r');
            for (uint64_t i = 0; i < ph.count; i++) {
                RecvAll(fd, req.data(), req.size());
                SendAll(fd, reply.data(), reply.size());
            }
        } else if (ph.kind == kThroughput) {
            uint64_t got = 0;
            while (got < ph.count) {
                size_t want =
                    static_cast<size_t>(std::min<uint64_t>(stream.size(), ph.count - got));
                ssize_t n = recv(fd, stream.data(), want, 0);
                if (n > 0) {
                    got += static_cast<uint64_t>(n);
                } else if (n == 0) {
                    Die("peer closed during throughput phase");
                } else if (errno != EAGAIN && errno != EINTR) {
                    DieErrno("recv");
                }
            }
            SendAll(fd, &got, sizeof got);
        } else if (ph.kind == kTransfer) {
            ShmemArea area(ph.request);
            for (uint64_t r = 0; r < ph.count; r++) {
                RecvAll(fd, area.data(), area.size());
                const uint64_t got = area.size();
                SendAll(fd, &got, sizeof got);
            }
        } else {
            Die("unknown phase kind");
        }
    }
    close(fd);
    return 0;
}

// ---- client ------------------------------------------------------------------

using dshm::bench::Stats;
using dshm::bench::Summarize;

void SendPhase(int fd, Kind kind, uint32_t mode, uint32_t request, uint32_t reply, uint64_t count) {
    SetMode(fd, kBlocking);
    Phase ph{kMagic, kind, mode, request, reply, 0, count};
    SendAll(fd, &ph, sizeof ph);
    SetMode(fd, mode);
}

void RunRtt(int fd, uint32_t mode, uint32_t request, uint32_t reply, uint64_t iterations) {
    uint64_t warmup = std::min<uint64_t>(100, iterations / 10);
    SendPhase(fd, kRtt, mode, request, reply, warmup + iterations);
    std::vector<char> req(request, 'q'), rep(reply);
    std::vector<uint64_t> ns;
    ns.reserve(iterations);
    for (uint64_t i = 0; i < warmup + iterations; i++) {
        uint64_t t0 = NowNs();
        SendAll(fd, req.data(), req.size());
        RecvAll(fd, rep.data(), rep.size());
        uint64_t t1 = NowNs();
        if (i >= warmup) {
            ns.push_back(t1 - t0);
        }
    }
    Stats s = Summarize(std::move(ns));
    printf(
        "tcp_rtt mode=%s req=%u reply=%u n=%zu p50_us=%.2f p90_us=%.2f p99_us=%.2f "
        "mean_us=%.2f\n",
        ModeName(mode), request, reply, s.n, s.p50, s.p90, s.p99, s.mean);
    fflush(stdout);
}

void RunThroughput(int fd, uint32_t mode, uint64_t bytes) {
    SendPhase(fd, kThroughput, mode, 1, 8, bytes);
    std::vector<char> chunk(kStreamChunk, 's');
    uint64_t t0 = NowNs();
    uint64_t sent = 0;
    while (sent < bytes) {
        size_t n = static_cast<size_t>(std::min<uint64_t>(chunk.size(), bytes - sent));
        SendAll(fd, chunk.data(), n);
        sent += n;
    }
    uint64_t acked = 0;
    RecvAll(fd, &acked, sizeof acked);
    uint64_t t1 = NowNs();
    if (acked != bytes) {
        Die("server acknowledged " + std::to_string(acked) + " bytes");
    }
    double sec = static_cast<double>(t1 - t0) / 1e9;
    printf("tcp_throughput mode=%s bytes=%llu seconds=%.4f mb_per_s=%.1f\n", ModeName(mode),
           static_cast<unsigned long long>(bytes), sec, static_cast<double>(bytes) / 1e6 / sec);
    fflush(stdout);
}

void RunTransfer(int fd, uint32_t mode, uint32_t bytes, uint64_t rounds) {
    SendPhase(fd, kTransfer, mode, bytes, 8, rounds + 1);
    ShmemArea area(bytes);
    // Round r writes byte i as (i * 7 + r + 1) & 0xff, from a pattern
    // shifted by a multiple of 183 (7 * 183 == 1 mod 256): every byte
    // changes every round, as in dshm_bench writeback.
    std::vector<uint8_t> pat(bytes + 256);
    for (size_t i = 0; i < pat.size(); i++) {
        pat[i] = static_cast<uint8_t>(i * 7);
    }
    std::vector<uint64_t> ns;
    for (uint64_t r = 0; r < rounds + 1; r++) {
        memcpy(area.data(), pat.data() + (((r + 1) * 183) & 0xff), bytes);
        const uint64_t t0 = NowNs();
        for (size_t off = 0; off < bytes; off += kTransferChunk) {
            SendAll(fd, area.data() + off, std::min<size_t>(kTransferChunk, bytes - off));
        }
        uint64_t acked = 0;
        RecvAll(fd, &acked, sizeof acked);
        const uint64_t t1 = NowNs();
        if (acked != bytes) {
            Die("server acknowledged " + std::to_string(acked) + " bytes");
        }
        if (r > 0) {
            ns.push_back(t1 - t0);
        }
    }
    Stats s = Summarize(std::move(ns));
    const double mbps =
        static_cast<double>(bytes) * static_cast<double>(rounds) / (s.sum / 1e6) / 1e6;
    printf("tcp_transfer mode=%s bytes=%u rounds=%llu mb_per_s=%.1f p50_ms=%.3f p99_ms=%.3f\n",
           ModeName(mode), bytes, static_cast<unsigned long long>(rounds), mbps, s.p50 / 1000,
           s.p99 / 1000);
    fflush(stdout);
}

struct ClientOpts {
    std::string connect;
    uint64_t iterations = 0;
    bool iterations_given = false;
    std::vector<uint32_t> modes{kBlocking};
    uint32_t request = 64;
    std::vector<uint32_t> replies{4096, 64};
    uint64_t throughput = 0;
    uint32_t transfer = 0;
    uint64_t transfer_rounds = 20;
};

int Client(const ClientOpts &o, unsigned timeout) {
    ArmTimeout(timeout);
    addrinfo *ai = Resolve(o.connect, false);
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        DieErrno("socket");
    }
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        DieErrno("connect " + o.connect);
    }
    freeaddrinfo(ai);
    SetNoDelay(fd);
    uint64_t iterations =
        o.iterations_given ? o.iterations : (o.throughput > 0 || o.transfer > 0 ? 0 : 10000);
    for (uint32_t mode : o.modes) {
        if (iterations > 0) {
            for (uint32_t reply : o.replies) {
                RunRtt(fd, mode, o.request, reply, iterations);
            }
        }
        if (o.throughput > 0) {
            RunThroughput(fd, mode, o.throughput);
        }
        if (o.transfer > 0) {
            RunTransfer(fd, mode, o.transfer, o.transfer_rounds);
        }
    }
    SendPhase(fd, kEnd, kBlocking, 1, 0, 0);
    close(fd);
    return 0;
}

[[noreturn]] void Usage() {
    fprintf(stderr,
            "usage: tcp_floor server --listen ADDR:PORT [--timeout SEC]\n"
            "       tcp_floor client --connect ADDR:PORT [--iterations N]\n"
            "                        [--mode blocking|busypoll|both] [--request BYTES]\n"
            "                        [--reply BYTES] [--throughput BYTES]\n"
            "                        [--transfer BYTES --transfer-rounds R] [--timeout SEC]\n");
    exit(2);
}

uint64_t ParseU64(const std::string &s, uint64_t min, uint64_t max) {
    char *end = nullptr;
    errno = 0;
    unsigned long long v = strtoull(s.c_str(), &end, 0);
    if (errno != 0 || end == s.c_str() || *end != '\0' || v < min || v > max || s[0] == '-') {
        fprintf(stderr, "tcp_floor: bad number '%s'\n", s.c_str());
        Usage();
    }
    return v;
}

}  // namespace

int main(int argc, char **argv) {
    if (argc < 2) {
        Usage();
    }
    std::string role = argv[1];
    if (role != "server" && role != "client") {
        Usage();
    }
    std::string listen_spec;
    unsigned timeout = 30;
    ClientOpts o;
    for (int i = 2; i < argc; i++) {
        std::string a = argv[i];
        if (i + 1 >= argc) {
            Usage();
        }
        std::string v = argv[++i];
        if (a == "--timeout") {
            timeout = static_cast<unsigned>(ParseU64(v, 1, 86400));
        } else if (role == "server" && a == "--listen") {
            listen_spec = v;
        } else if (role == "client" && a == "--connect") {
            o.connect = v;
        } else if (role == "client" && a == "--iterations") {
            o.iterations = ParseU64(v, 0, 1ull << 32);
            o.iterations_given = true;
        } else if (role == "client" && a == "--mode") {
            if (v == "blocking") {
                o.modes = {kBlocking};
            } else if (v == "busypoll") {
                o.modes = {kBusyPoll};
            } else if (v == "both") {
                o.modes = {kBlocking, kBusyPoll};
            } else {
                Usage();
            }
        } else if (role == "client" && a == "--request") {
            o.request = static_cast<uint32_t>(ParseU64(v, 1, kMaxMsg));
        } else if (role == "client" && a == "--reply") {
            o.replies = {static_cast<uint32_t>(ParseU64(v, 1, kMaxMsg))};
        } else if (role == "client" && a == "--throughput") {
            o.throughput = ParseU64(v, 1, 1ull << 40);
        } else if (role == "client" && a == "--transfer") {
            o.transfer = static_cast<uint32_t>(ParseU64(v, 1, kMaxTransfer));
            if (o.transfer % 4096 != 0) {
                Die("--transfer: a multiple of 4096 bytes (whole pages, as a write-back)");
            }
        } else if (role == "client" && a == "--transfer-rounds") {
            o.transfer_rounds = ParseU64(v, 1, 1u << 20);
        } else {
            Usage();
        }
    }
    if (role == "server") {
        if (listen_spec.empty()) {
            Usage();
        }
        return Server(listen_spec, timeout);
    }
    if (o.connect.empty()) {
        Usage();
    }
    return Client(o, timeout);
}
