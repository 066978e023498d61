// libdshm C++ wrapper (header-only, RAII) over the C API of dshm.h; read
// dshm.h for the memory model, the guest-local exclusion (flock) and the
// timeout caveats, which apply unchanged.
//
//   dshm::Device seg = dshm::Device::Open("counters");        // throws dshm::Error
//   {
//       dshm::LockGuard g(seg, 3, std::chrono::seconds(10));  // acquire lock 3
//       auto *ctr = reinterpret_cast<volatile uint64_t *>(seg.mem());
//       *ctr += 1;
//   }                                                         // released here
//
// Thread safety: as dshm.h.  A Device may be shared by threads (each takes
// its own LockGuard); it must outlive its guards.  A LockGuard belongs to
// the thread that made it.
#pragma once

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "dshm.h"

namespace dshm {

// A failed libdshm call: code() is the DSHM_ERR_* value, status() the
// dshmd status for DSHM_ERR_REFUSED, what() the detailed message.
class Error : public std::runtime_error {
  public:
    Error(int code, const std::string &what)
        : std::runtime_error(what), code_(code), status_(dshm_refusal_status()) {}
    int code() const { return code_; }
    uint32_t status() const { return status_; }

  private:
    int code_;
    uint32_t status_;
};

// Throws Error for a non-zero libdshm return code.
inline void Check(int rc, const char *what) {
    if (rc != DSHM_SUCCESS) {
        std::string msg = std::string(what) + ": " + dshm_strerror(rc);
        if (*dshm_errmsg())
            msg += std::string(": ") + dshm_errmsg();
        throw Error(rc, msg);
    }
}

// Lock timeouts: kForever waits without limit.
inline constexpr std::chrono::milliseconds kForever{-1};

inline int ToMs(std::chrono::milliseconds t) {
    if (t.count() < 0)
        return -1;
    return t.count() > 0x7fffffff ? 0x7fffffff : static_cast<int>(t.count());
}

inline std::vector<dshm_info> List() {
    size_t n = 0;
    Check(dshm_list(nullptr, 0, &n), "dshm_list");
    std::vector<dshm_info> v(n);
    Check(dshm_list(v.data(), v.size(), &n), "dshm_list");
    v.resize(std::min(n, v.size()));
    return v;
}

// An open segment: owns a dshm_dev; move-only.
class Device {
  public:
    Device() = default;
    explicit Device(dshm_dev *dev) : dev_(dev) {}
    Device(Device &&o) noexcept : dev_(std::exchange(o.dev_, nullptr)) {}
    Device &operator=(Device &&o) noexcept {
        if (this != &o) {
            dshm_close(dev_);
            dev_ = std::exchange(o.dev_, nullptr);
        }
        return *this;
    }
    Device(const Device &) = delete;
    Device &operator=(const Device &) = delete;
    ~Device() { dshm_close(dev_); }

    static Device Open(const std::string &segment) {
        dshm_dev *d = nullptr;
        Check(dshm_open(segment.c_str(), &d), ("open segment '" + segment + "'").c_str());
        return Device(d);
    }

    explicit operator bool() const { return dev_ != nullptr; }
    dshm_dev *get() const { return dev_; }
    volatile uint8_t *mem() const { return static_cast<volatile uint8_t *>(dshm_mem(dev_)); }
    uint64_t size() const { return dshm_size(dev_); }
    std::string segment() const { return dshm_segment(dev_); }
    uint32_t nlocks() const { return dshm_nlocks(dev_); }

    void lock(uint32_t n, std::chrono::milliseconds timeout = kForever) {
        Check(dshm_lock(dev_, n, ToMs(timeout)), "dshm_lock");
    }
    void unlock(uint32_t n, std::chrono::milliseconds timeout = kForever) {
        Check(dshm_unlock(dev_, n, ToMs(timeout)), "dshm_unlock");
    }

  private:
    dshm_dev *dev_ = nullptr;
};

// Holds lock n of a Device for its lifetime.  The constructor throws Error
// when the lock cannot be taken.  The destructor cannot report a failed
// release: call unlock() to see it (it throws); after that the guard is
// empty.
class LockGuard {
  public:
    LockGuard(Device &dev, uint32_t n, std::chrono::milliseconds timeout = kForever)
        : dev_(dev.get()), n_(n) {
        Check(dshm_lock(dev_, n_, ToMs(timeout)), "dshm_lock");
    }
    LockGuard(const LockGuard &) = delete;
    LockGuard &operator=(const LockGuard &) = delete;
    ~LockGuard() {
        if (dev_)
            dshm_unlock(dev_, n_, -1);
    }

    void unlock(std::chrono::milliseconds timeout = kForever) {
        dshm_dev *d = std::exchange(dev_, nullptr);
        if (d)
            Check(dshm_unlock(d, n_, ToMs(timeout)), "dshm_unlock");
    }
    bool owns_lock() const { return dev_ != nullptr; }
    uint32_t id() const { return n_; }

  private:
    dshm_dev *dev_;
    uint32_t n_;
};

}  // namespace dshm
