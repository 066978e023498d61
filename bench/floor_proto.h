// floor_proto.h: the session protocol of tcp_floor (tcp_floor.cc), shared
// with uffd_floor's relay mode, which talks to a tcp_floor server.
//
// A session is a sequence of phases announced by the client (struct Phase);
// see tcp_floor.cc for what each phase does.  All fields little-endian (both
// ends run on this machine's architecture).
#pragma once

#include <netdb.h>

#include <cstdint>
#include <string>

namespace dshm::bench {

constexpr uint32_t kFloorMagic = 0x544d4844;  // "DHMT"

enum FloorKind : uint32_t { kRtt = 1, kThroughput = 2, kEnd = 3, kTransfer = 4 };
enum FloorMode : uint32_t { kBlocking = 0, kBusyPoll = 1 };

struct Phase {
    uint32_t magic;
    uint32_t kind;
    uint32_t mode;
    uint32_t request;
    uint32_t reply;
    uint32_t reserved;
    uint64_t count;  // rtt: exchanges (including warm-up); throughput: bytes;
                     // transfer: rounds (including the warm-up round)
};
static_assert(sizeof(Phase) == 32);

// Resolves numeric "ADDR:PORT" / "[V6ADDR]:PORT" (never a name lookup).
// Returns nullptr with *err set on a bad address.
inline addrinfo *ResolveNumeric(const std::string &spec, bool passive, std::string *err) {
    const size_t colon = spec.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == spec.size()) {
        *err = "bad address '" + spec + "' (want ADDR:PORT)";
        return nullptr;
    }
    std::string host = spec.substr(0, colon), port = spec.substr(colon + 1);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
        host = host.substr(1, host.size() - 2);
    }
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
    addrinfo *res = nullptr;
    const int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
    if (rc != 0) {
        *err = "address '" + spec + "': " + gai_strerror(rc);
        return nullptr;
    }
    return res;
}

}  // namespace dshm::bench
