// libdshm-client: attach a host process to a dshm segment exactly the way the
// patched QEMU does (docs/protocol.md section 2), and take its locks.
//
//   dshm::Client c;
//   Status st = c.Attach("/run/dshm/dshmd.sock", "counters", "my-process");
//   c.Acquire(0);  ... c.data()[...] ...  c.Release(0);
//
// Attach(): connects to the local dshmd, HELLO, ATTACH; receives the
// segment memfd and maps it MAP_SHARED; creates a userfaultfd with the
// features dshmd asks for, registers the whole mapping (MISSING | WP), sends
// the uffd with the mapping's address (UFFD) and waits for READY.  From then
// on every first access to an invalid page, and every first write to a page
// since the last release, is resolved by dshmd.  The client keeps its own
// copy of the uffd open for as long as the mapping lives.
//
// Acquire()/Release() send the request and block until dshmd answers; the
// protocol itself is asynchronous (one outstanding request per lock).
//
// Thread safety: a Client is used by one thread at a time (the mapping may be
// read and written from any thread: faults are served by dshmd).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "frame.h"
#include "os/result.h"
#include "status.h"

namespace dshm {

struct ReleaseInfo {
    uint32_t pages_written = 0;  // pages written back to the owner
    uint32_t bytes_written = 0;  // diff bytes written back
};

class Client {
  public:
    Client() = default;
    ~Client();
    Client(const Client &) = delete;
    Client &operator=(const Client &) = delete;

    // Attaches to `segment` through the dshmd listening on `socket_path`.
    // `uuid`: the VM UUID the ATTACH names (8-4-4-4-12 hex, as QEMU's -uuid;
    // empty: all zero, unknown), which a segment's `allow` list checks.
    Status Attach(const std::string &socket_path, const std::string &segment,
                  const std::string &name, const std::string &uuid = "");

    Status Acquire(uint32_t lock);
    Status Release(uint32_t lock, ReleaseInfo *info = nullptr);
    // Live migration, as the patched QEMU does it (docs/protocol.md section
    // 11): MigrateOut() asks dshmd to write this client's changes back to the
    // owner while keeping its locks and returns the hand-off token; a client
    // attached on the destination presents the token with Adopt() and gets
    // the locks the source held (held) or waited for (queued).
    Status MigrateOut(dshm_handoff *token);
    Status Adopt(const dshm_handoff &token, dshm_adopted *out);

    // Closes the connection and unmaps (dshmd drops this client's locks).
    void Detach();

    volatile uint8_t *data() const { return data_; }
    uint64_t size() const { return size_; }
    uint32_t client_id() const { return client_id_; }
    uint32_t owner_host() const { return owner_host_; }

  private:
    Status Send(const std::vector<uint8_t> &msg, int fd = -1);
    // Reads until a frame arrives (blocking).
    Status Receive(Frame *out);
    Status LockRequest(uint16_t type, uint32_t lock, uint16_t want, ReleaseInfo *info);

    os::UniqueFd sock_;
    os::UniqueFd uffd_;
    FrameReader reader_{Channel::kClient, Receiver::kClient, ClientRole::kClient};
    volatile uint8_t *data_ = nullptr;
    uint64_t size_ = 0;
    uint32_t client_id_ = 0;
    uint32_t owner_host_ = 0;
    uint32_t next_tag_ = 1;
};

// A dshmctl connection: one query, one JSON answer.
Status CtlQuery(const std::string &socket_path, uint32_t what, std::string *json);

}  // namespace dshm
