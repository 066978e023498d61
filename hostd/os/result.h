// dshm::os error values and the owned file descriptor type.
//
// Every function of the OS layer (hostd/os/) reports failure as a value, never
// by throwing and never through a global: it returns Result<T>, which holds
// either a T or an OsError { err, what }.  `err` is the errno value of the
// failing system call (never 0 for an error); `what` names the call and its
// context ("UFFDIO_COPY dst=0x7f..: File exists") for logs.
//
// Thread-safety: the OS layer is a set of thin system-call wrappers with no
// shared state; every function may be called from any thread.  The usual
// rules for the underlying fds apply (e.g. two threads reading one uffd get
// disjoint events).
#pragma once

#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <string>
#include <utility>
#include <variant>

namespace dshm::os {

inline constexpr size_t kPageSize = 4096;

struct OsError {
    int err = 0;       // errno value; never 0 for a real error
    std::string what;  // call and context, with strerror(err) appended

    // Builds an OsError from errno value `err` and a context string; appends
    // ": <strerror(err)>" to `context`.
    static OsError FromErrno(int err, const std::string &context);
};

// "0x1f000": addresses and offsets in error messages.
std::string Hex(uint64_t v);

struct Unit {};

// Either a value or an OsError.  Accessing value() of an error (or error() of
// a value) is a programming error (std::get throws std::bad_variant_access).
template <typename T>
class [[nodiscard]] Result {
  public:
    Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
    Result(OsError error) : v_(std::move(error)) {}

    bool ok() const { return v_.index() == 0; }
    explicit operator bool() const { return ok(); }

    T &value() & { return std::get<0>(v_); }
    const T &value() const & { return std::get<0>(v_); }
    T &&value() && { return std::get<0>(std::move(v_)); }
    T &operator*() & { return value(); }
    const T &operator*() const & { return value(); }
    T *operator->() { return &value(); }
    const T *operator->() const { return &value(); }

    const OsError &error() const { return std::get<1>(v_); }
    // errno of the error, 0 when ok(): handy for `if (r.err() == EEXIST)`.
    int err() const { return ok() ? 0 : error().err; }

  private:
    std::variant<T, OsError> v_;
};

// Result of an operation without a value.  Not named Status: dshm::Status
// (status.h) is the protocol's error value (a dshm_status code and a
// message, sent in ERROR), a different thing, and inside dshm::os an
// unqualified `Status` meant this one while everywhere else in dshm it means
// that one.  VoidResult says what it is: a Result<T> with no T.
using VoidResult = Result<Unit>;
inline VoidResult Ok() {
    return Unit{};
}

// Owns one file descriptor (closes it on destruction); move-only.  -1 means
// "none".
class UniqueFd {
  public:
    UniqueFd() = default;
    explicit UniqueFd(int fd) : fd_(fd) {}
    UniqueFd(UniqueFd &&o) noexcept : fd_(o.release()) {}
    UniqueFd &operator=(UniqueFd &&o) noexcept {
        if (this != &o) {
            reset(o.release());
        }
        return *this;
    }
    UniqueFd(const UniqueFd &) = delete;
    UniqueFd &operator=(const UniqueFd &) = delete;
    ~UniqueFd() { reset(); }

    int get() const { return fd_; }
    bool valid() const { return fd_ >= 0; }
    // Gives up ownership: the caller must close the returned fd.
    int release() { return std::exchange(fd_, -1); }
    // Closes the current fd (if any) and takes ownership of `fd`.
    void reset(int fd = -1) {
        if (fd_ >= 0) {
            // close() always releases the fd on Linux, even on EINTR: no retry.
            ::close(fd_);
        }
        fd_ = fd;
    }

  private:
    int fd_ = -1;
};

}  // namespace dshm::os
