/*
 * libdshm: dshm distributed shared memory from inside a Linux guest (C API).
 *
 * A dshm segment appears in the guest as an ivshmem PCI function (1af4:1110)
 * created with dsm=on: BAR2 is the shared memory, BAR0 holds the DSM
 * registers of include/dshm/wire.h (MAGIC, SEGNAME, STATE, one LOCK register
 * per lock id...).  libdshm finds the device by segment name through sysfs,
 * maps both BARs (root only: /sys/bus/pci/devices/<bdf>/resourceN) and takes
 * and releases the segment's locks.
 *
 * Memory model (eager release consistency): writes to the memory made while
 * holding lock N are propagated to the other VMs when N is released; a VM
 * that acquires N afterwards sees them.  Access shared data only between
 * dshm_lock(N) and dshm_unlock(N) and through volatile pointers (the
 * mapping is device memory).  dshm_lock() returns after a full barrier that
 * follows the grant; dshm_unlock() issues a full barrier before the release
 * command, so the critical section's accesses stay inside it.
 *
 * Locks are granted to the VM, not to a process.  To make processes (and
 * threads) of one VM exclude each other too, dshm_lock() first takes a
 * guest-local flock(2) on /run/dshm/<segment>.<n>.lock (created as needed;
 * one open file per call, so two threads of a process also exclude each
 * other), then the VM-level lock; dshm_unlock() drops the flock only after
 * the VM-level release has completed (or failed).  Every user of a lock in
 * the VM must go through libdshm (or dshm-lock / dshm-tool, which use it):
 * under the flock, a VM-level lock found ACQUIRING or HELD with nobody
 * registered as holder is an orphan (a process died holding it, or a
 * dshm_lock() timed out while the request was queued) and is adopted by the
 * caller: dshm_lock() returns DSHM_SUCCESS with the lock held.  A lock
 * found RELEASING is waited for.  `dshm-lock SEG acquire` (a script holding
 * a lock across processes) registers itself in /run/dshm/<segment>.<n>.held;
 * dshm_lock() waits while that file exists.
 *
 * The register interface cannot cancel a queued acquire: when dshm_lock()
 * times out (DSHM_ERR_TIMEOUT) the request stays queued at dshmd and the VM
 * will be granted the lock later; the next dshm_lock() of that lock in this
 * VM adopts it, or `dshm-lock SEG release --lock N --force` gives it back.
 *
 * Thread safety: dshm_list/dshm_open are reentrant.  One dshm_dev may be
 * used by several threads at once for dshm_lock/dshm_unlock/accessors;
 * dshm_close must not race with any other call on the same handle.  A
 * thread that holds lock N through a handle and calls dshm_lock(N) again on
 * that handle gets DSHM_ERR_ALREADY_HELD (locks are not recursive).
 * dshm_errmsg() and dshm_refusal_status() are per thread (like errno).
 */
#ifndef DSHM_GUEST_DSHM_H
#define DSHM_GUEST_DSHM_H

#include <stddef.h>
#include <stdint.h>

#include "dshm/wire.h" /* DSHM_SEGNAME_LEN, DSHM_LOCK_*, DSHM_DEV_*, dshm_status */

#ifdef __cplusplus
extern "C" {
#endif

/* Return codes of the functions below: 0 or a negative DSHM_ERR_*. */
enum dshm_err {
    DSHM_SUCCESS = 0,
    DSHM_ERR_SYSTEM = -1,        /* a system call failed (errno and dshm_errmsg() say which) */
    DSHM_ERR_INVAL = -2,         /* bad argument (NULL, empty or too long name) */
    DSHM_ERR_NO_DEVICE = -3,     /* no DSM device carries that segment */
    DSHM_ERR_NOT_DSM = -4,       /* the device is not a dshm device (no MAGIC, stock ivshmem) */
    DSHM_ERR_VERSION = -5,       /* the device speaks another DSM register VERSION */
    DSHM_ERR_BAD_LOCK = -6,      /* lock id >= the device's NLOCKS */
    DSHM_ERR_NOT_READY = -7,     /* the device is not attached to dshmd (STATE DETACHED) */
    DSHM_ERR_DEV_FAILED = -8,    /* the device lost dshmd (STATE FAILED) */
    DSHM_ERR_TIMEOUT = -9,       /* timed out; a queued acquire stays queued (see above) */
    DSHM_ERR_REFUSED = -10,      /* dshmd or the device refused: see dshm_refusal_status() */
    DSHM_ERR_ALREADY_HELD = -11, /* this thread already holds the lock through this handle */
    DSHM_ERR_NOT_HELD = -12,     /* unlock of a lock this handle does not hold */
};

typedef struct dshm_dev dshm_dev;

/* One DSM device as listed by dshm_list(). */
typedef struct dshm_info {
    char segment[DSHM_SEGNAME_LEN]; /* NUL-terminated segment name */
    char bdf[16];                   /* PCI address, "0000:00:04.0" */
    uint64_t size;                  /* segment size (SIZE_HI:SIZE_LO) */
    uint64_t bar2_size;             /* size of the BAR2 window (>= size) */
    uint32_t version;               /* DSM register VERSION */
    uint32_t nlocks;                /* lock ids 0..nlocks-1 */
    uint32_t state;                 /* enum dshm_dev_state */
    uint32_t reserved;
} dshm_info;

/* Lists the DSM devices of this guest, sorted by PCI address: fills
 * out[0..min(count, max)) and sets *count to the number found (which may
 * exceed max).  Stock ivshmem devices are skipped.  Returns DSHM_SUCCESS, or
 * DSHM_ERR_SYSTEM when an ivshmem device could not be inspected (not root)
 * and none was found. */
int dshm_list(dshm_info *out, size_t max, size_t *count);

/* Opens the DSM device whose SEGNAME is `segment` and maps its BARs.
 * On success *out is a handle for dshm_close(). */
int dshm_open(const char *segment, dshm_dev **out);

/* Releases every lock the handle still holds (with a 10 s timeout each),
 * unmaps and frees.  NULL is accepted. */
void dshm_close(dshm_dev *dev);

/* The shared memory (BAR2) and the segment size in bytes. */
volatile void *dshm_mem(const dshm_dev *dev);
uint64_t dshm_size(const dshm_dev *dev);
const char *dshm_segment(const dshm_dev *dev);
uint32_t dshm_nlocks(const dshm_dev *dev);

/* Acquires lock `lock` for this VM and this process/thread.  timeout_ms < 0
 * waits forever; the timeout covers the guest-local wait and the grant. */
int dshm_lock(dshm_dev *dev, uint32_t lock, int timeout_ms);

/* Releases a lock taken by dshm_lock() through this handle; returns once the
 * release (write-back to the other VMs) has completed.  Whatever the outcome
 * the handle no longer holds the lock and the guest-local flock is dropped. */
int dshm_unlock(dshm_dev *dev, uint32_t lock, int timeout_ms);

/* Raw register reads: the lock's state (DSHM_LOCK_*, or DSHM_LOCK_ERROR |
 * status) and the device state (DSHM_DEV_*). */
uint32_t dshm_lock_state(const dshm_dev *dev, uint32_t lock);
uint32_t dshm_dev_state(const dshm_dev *dev);

/* A static English description of a DSHM_ERR_* code. */
const char *dshm_strerror(int err);
/* Name of an enum dshm_status value ("E_OWNER_LOST"), or "status <n>". */
const char *dshm_status_name(uint32_t status);
/* Name of a lock register value ("FREE", "HELD", "ERROR(E_PENDING)"...) in
 * a thread-local buffer valid until the next call from the thread. */
const char *dshm_lock_state_name(uint32_t state);
/* The dshm_status of the last DSHM_ERR_REFUSED returned to this thread. */
uint32_t dshm_refusal_status(void);
/* A message with the details of the last error returned to this thread
 * (file names, errno text, lock id), or "" after a success. */
const char *dshm_errmsg(void);

#ifdef __cplusplus
}
#endif

#endif /* DSHM_GUEST_DSHM_H */
