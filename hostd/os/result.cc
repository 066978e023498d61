#include "result.h"

#include <cstring>

namespace dshm::os {

OsError OsError::FromErrno(int err, const std::string &context) {
    char buf[128];
    // GNU strerror_r: returns a pointer to the message (maybe not buf).
    const char *msg = strerror_r(err, buf, sizeof buf);
    return OsError{err, context + ": " + msg};
}

}  // namespace dshm::os
