#include "result.h"

#include <cinttypes>
#include <cstdio>
#include <cstring>

namespace dshm::os {

OsError OsError::FromErrno(int err, const std::string &context) {
    char buf[128];
    // GNU strerror_r: returns a pointer to the message (maybe not buf).
    const char *msg = strerror_r(err, buf, sizeof buf);
    return OsError{err, context + ": " + msg};
}

std::string Hex(uint64_t v) {
    char buf[32];
    snprintf(buf, sizeof buf, "0x%" PRIx64, v);
    return buf;
}

}  // namespace dshm::os
