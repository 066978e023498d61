// libdshm internals shared by the guest tools (dshm-tool, dshm-lock) and the
// unit tests.  Not part of the public API (dshm.h / dshm.hpp).
//
// Thread safety: the free functions are reentrant; the per-handle setters
// (SetRegWriteHook, SetPollPolicy) must be called before the handle is
// shared between threads.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dshm.h"
#include "dshm/exit_codes.h"
#include "ivshmem_dev.h"

namespace dshm::guest {

// The exit status (include/dshm/exit_codes.h) for a libdshm error code:
// the one mapping of dshm-lock and dshm-tool.
inline int ExitStatusFor(int rc) {
    switch (rc) {
        case DSHM_SUCCESS:
            return DSHM_EXIT_OK;
        case DSHM_ERR_INVAL:
        case DSHM_ERR_BAD_LOCK:
            return DSHM_EXIT_USAGE;
        case DSHM_ERR_NO_DEVICE:
        case DSHM_ERR_NOT_DSM:
        case DSHM_ERR_VERSION:
            return DSHM_EXIT_UNAVAILABLE;
        case DSHM_ERR_TIMEOUT:
            return DSHM_EXIT_TIMEOUT;
        case DSHM_ERR_REFUSED:
            return DSHM_EXIT_REFUSED;
        case DSHM_ERR_NOT_READY:
        case DSHM_ERR_DEV_FAILED:
            return DSHM_EXIT_DEVICE_DOWN;
        case DSHM_ERR_NOT_HELD:
            return DSHM_EXIT_NOT_HELD;
        default:
            return DSHM_EXIT_FAILED;
    }
}

// Where libdshm looks for devices and keeps its guest-local lock files.
struct OpenOptions {
    std::string sysfs_root = "/sys/bus/pci/devices";
    std::string lock_dir = "/run/dshm";
};

// How dshm_lock/dshm_unlock wait for the device: spin (re-reading the
// register) for spin_ns, then sleep with exponential backoff from
// sleep_min_us to sleep_max_us between reads.  Each register read is an
// MMIO exit to QEMU, hence the short spin.
struct PollPolicy {
    uint32_t spin_ns = 20000;
    uint32_t sleep_min_us = 10;
    uint32_t sleep_max_us = 500;
};

// The identification registers of a DSM BAR0.
struct DsmInfo {
    std::string segment;
    uint32_t version = 0, nlocks = 0, state = 0, errors = 0, last_error = 0;
    uint64_t size = 0;
};

// An aligned 32-bit volatile load from a mapped BAR0.
inline uint32_t ReadReg(const volatile uint8_t *bar0, uint32_t offset) {
    return *reinterpret_cast<const volatile uint32_t *>(bar0 + offset);
}

// Reads the DSM registers of a mapped BAR0 of `bar0_size` bytes.  Returns
// false when it is not a DSM BAR0 (too small, or MAGIC != DSHM_MAGIC).
bool ReadDsmInfo(const volatile uint8_t *bar0, uint64_t bar0_size, DsmInfo *out);

// Maps BAR0 of `dev` and reads its DSM registers.  Returns DSHM_SUCCESS,
// DSHM_ERR_NOT_DSM (BAR0 too small or no MAGIC) or DSHM_ERR_SYSTEM (*error).
int InspectDevice(const IvshmemDevice &dev, DsmInfo *out, std::string *error);

// A device selected by `selector`: a list index or BDF (as SelectDevice),
// else a segment name.  Returns nullptr and sets *error when nothing matches.
const IvshmemDevice *SelectDeviceOrSegment(const std::vector<IvshmemDevice> &devices,
                                           const std::string &selector, std::string *error);

// dshm_list / dshm_open with explicit options (the C API uses the defaults).
int ListDsm(const OpenOptions &opts, std::vector<dshm_info> *out);
int OpenSegment(const std::string &segment, const OpenOptions &opts, dshm_dev **out);
// Opens a given ivshmem device (it must be a DSM device).
int OpenDevice(const IvshmemDevice &dev, const OpenOptions &opts, dshm_dev **out);

// Test hooks.  With a hook set, register writes go to hook(ctx, offset,
// value) instead of BAR0 (a plain buffer cannot tell a RELEASE command from
// the HELD state it overwrites: both are 2).
using RegWriteHook = void (*)(void *ctx, uint32_t offset, uint32_t value);
void SetRegWriteHook(dshm_dev *dev, RegWriteHook hook, void *ctx);
void SetPollPolicy(dshm_dev *dev, const PollPolicy &policy);
const volatile uint8_t *Bar0(const dshm_dev *dev);
const IvshmemDevice &Device(const dshm_dev *dev);

// Script locking (dshm-lock acquire / release): the lock is taken as by
// dshm_lock(), then registered in <lock_dir>/<segment>.<n>.held (holder
// text: pid and `note`) and the flock is dropped, so the lock outlives the
// process.  ReleaseDetached releases a lock registered that way (or, with
// force, whatever this VM holds or has queued for that lock id: a queued
// acquire is waited for and then released) and removes the registration.
// Returns DSHM_ERR_NOT_HELD when not registered (without force) or when
// this VM neither holds nor has queued the lock.
int AcquireDetached(dshm_dev *dev, uint32_t lock, int timeout_ms, const std::string &note);
int ReleaseDetached(dshm_dev *dev, uint32_t lock, int timeout_ms, bool force);
// The registration text of a script-held lock, or "" when there is none.
std::string DetachedHolder(const dshm_dev *dev, uint32_t lock);

}  // namespace dshm::guest
