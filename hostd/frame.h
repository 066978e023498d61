// Frames: the one validation boundary for untrusted input.  Every byte that
// dshmd (or libdshm-client, or dshmctl) reads from a socket goes through a
// FrameReader, which yields only messages that are well-formed for the
// channel, the receiving end and the sender's role (include/dshm/wire.h,
// docs/protocol.md section 1).  Code behind the reader may rely on:
//   - hdr.magic == DSHM_MAGIC, hdr.flags == 0, hdr.type is allowed here;
//   - hdr.len == payload.size(), exactly the size of the type's fixed
//     struct, or within the type's [fixed, max] bounds with any count or
//     status field consistent with the length (see "Checks" in frame.cc);
//   - every name field (segment, vm_name, hello name) is NUL-terminated in
//     its field, and segment names are valid (IsValidSegmentName);
//   - lock ids < DSHM_MAX_LOCKS and host ids < DSHM_MAX_HOSTS wherever a
//     dshmd sent them (client ACQUIRE/RELEASE lock ids are NOT checked: a bad
//     one is answered with LOCK_FAILED E_BAD_LOCK, protocol.md section 4);
//   - status fields hold known dshm_status values;
//   - a WRITEBACK or UPDATE carries a diff that passes ValidateDiff
//     (diff.h), so a buffered release can be applied all-or-nothing;
//   - fds.size() is exactly 1 for ATTACHED and UFFD and 0 otherwise;
//   - the first frame is a HELLO (or an ERROR refusing ours) and there is
//     only one HELLO.
//
// Receiving ends (the "direction"):
//   Channel::kClient, Receiver::kDaemon: dshmd reading a client socket.
//     Accepts HELLO, ERROR, then for a sender whose HELLO said
//     DSHM_ROLE_CLIENT: ATTACH, UFFD, ACQUIRE, RELEASE, DETACH, MIGRATE_OUT,
//     ADOPT (the client -> dshmd types 0x0010..0x0017 but CTL_QUERY); for
//     DSHM_ROLE_CTL: CTL_QUERY.  The role is learnt from that HELLO.
//   Channel::kClient, Receiver::kClient: libdshm-client or dshmctl reading
//     dshmd.  Accepts HELLO, ERROR, then for ClientRole::kClient: ATTACHED,
//     READY, GRANTED, RELEASED, LOCK_FAILED, MIGRATE_READY, ADOPTED (the
//     dshmd -> client types 0x0020..0x0027 but CTL_REPLY); for
//     ClientRole::kCtl: CTL_REPLY.
//   Channel::kPeer: dshmd reading dshmd (both ends alike).  Accepts HELLO
//     (role DSHM_ROLE_PEER, version DSHM_PEER_VERSION), then exactly one
//     AUTH_CHALLENGE, then exactly one AUTH_PROOF, then nothing until the
//     caller, having checked the proof, calls SetAuthenticated(); from then
//     on the peer types 0x0040..0x005b (FETCH to EXCL_REVOKED, wire.h).
//     ERROR is accepted at any point.  So no segment byte, lock or
//     ownership message of an unauthenticated peer gets past the reader
//     (E_AUTH "... before authentication"), whatever its handlers do.
//
// File descriptors: SCM_RIGHTS fds are attached to the first byte of the
// message carrying them (wire.h).  The caller passes the fds of each recvmsg
// to AddFds BEFORE feeding that recvmsg's bytes, so the reader knows the
// stream position they arrived at.  Fds at the start of a message of a type
// that carries none, fds not at the start of a message, and a count other
// than the type's are protocol errors.  The reader closes every fd it does
// not hand out: on error, on destruction, and fds added after an error.
//
// Errors: the first violation puts the reader in a permanent error state;
// Next() then returns that error forever and further input is dropped (fds
// closed).  The status is E_PROTO, or E_VERSION for a HELLO of another
// protocol version (protocol.md: answer ERROR with status.code(), close).
// A header is checked as soon as its 16 bytes are present, so a header
// announcing a length beyond its type's bound is rejected without waiting
// for (or buffering) its payload.
//
// Thread safety: a FrameReader is not synchronized; use one per connection
// from one thread (or lock externally).  Frames are plain values (move-only
// because they own fds).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "dshm/wire.h"
#include "status.h"

namespace dshm {

enum class Channel { kClient, kPeer };

// Which end of a client channel reads the frames.  Ignored for kPeer.
enum class Receiver { kDaemon, kClient };

// The role of the client end of a client channel.
enum class ClientRole { kUnknown, kClient, kCtl };

// One validated message.
struct Frame {
    dshm_hdr hdr{};
    std::vector<uint8_t> payload;  // hdr.len bytes
    std::vector<int> fds;          // owned: ~Frame closes every fd >= 0 left here

    Frame() = default;
    Frame(Frame &&other) noexcept;
    Frame &operator=(Frame &&other) noexcept;
    Frame(const Frame &) = delete;
    Frame &operator=(const Frame &) = delete;
    ~Frame();

    // Transfers ownership of fds[i] to the caller (fds[i] becomes -1).
    // REQUIRES: i < fds.size().
    int TakeFd(size_t i = 0) {
        int fd = fds[i];
        fds[i] = -1;
        return fd;
    }

    // The fixed struct at the start of the payload, copied out (no alignment
    // requirement on the payload).
    // REQUIRES: payload.size() >= sizeof(T) (true for every validated frame
    // whose type's fixed struct is T).
    template <typename T>
    T Fixed() const {
        static_assert(std::is_trivially_copyable_v<T>);
        T value;
        memcpy(&value, payload.data(), sizeof(T));
        return value;
    }

    // The variable part after a fixed struct of `fixed_len` bytes.
    // REQUIRES: payload.size() >= fixed_len.
    std::span<const uint8_t> Extra(size_t fixed_len) const {
        return std::span<const uint8_t>(payload).subspan(fixed_len);
    }
    // The same, writable (a WRITEBACK the owner applies in place).
    std::span<uint8_t> MutableExtra(size_t fixed_len) {
        return std::span<uint8_t>(payload).subspan(fixed_len);
    }
};

class FrameReader {
  public:
    // REQUIRES: role != kUnknown when channel == kClient and
    //           receiver == kClient (a client library knows its own role).
    //           For dshmd on a client socket pass kUnknown: the role comes
    //           from the client's HELLO.
    FrameReader(Channel channel, Receiver receiver, ClientRole role);
    ~FrameReader();  // closes every fd not handed out
    FrameReader(const FrameReader &) = delete;
    FrameReader &operator=(const FrameReader &) = delete;

    // Appends bytes received from the stream.  Does nothing after an error.
    void Feed(const uint8_t *data, size_t len);

    // Feeding without a copy: Prepare returns room for up to `max` bytes at
    // the end of the reader's buffer (receive into it), then Commit(n) with
    // the count actually received (0..max) appends them, exactly as Feed of
    // those n bytes would.  Nothing else may be called in between; AddFds
    // for the same recvmsg goes before Commit (as before Feed).  After an
    // error the bytes are dropped as Feed drops them.
    uint8_t *Prepare(size_t max);
    void Commit(size_t n);

    // Takes ownership of fds received with the bytes that the NEXT Feed call
    // will pass (one recvmsg: AddFds(fds) then Feed(bytes)).  Closes them at
    // once if the reader is in error.
    void AddFds(std::span<const int> fds);

    // Extracts the next complete message:
    //   - OK and *frame holds a validated frame;
    //   - OK and *frame is nullopt: more bytes are needed;
    //   - an error: the input is invalid; the connection must be closed (after
    //     an ERROR message with status.code(), see above).
    // Call it until it yields nullopt or an error after each Feed: the reader
    // then never buffers more than one incomplete message (at most its
    // type's bound) plus the last fed chunk.
    Status Next(std::optional<Frame> *frame);

    bool failed() const { return !error_.ok(); }
    // The role of the client end: learnt from the HELLO on a dshmd client
    // socket (kUnknown before it), as given otherwise.
    ClientRole role() const { return role_; }
    Channel channel() const { return channel_; }
    bool hello_seen() const { return hello_seen_; }
    // Channel::kPeer: the AUTH_PROOF was yielded and the caller verified it:
    // the peer's other messages are accepted from the next frame on.
    // REQUIRES: the last frame yielded was the AUTH_PROOF.
    void SetAuthenticated();
    bool authenticated() const { return stage_ == PeerStage::kUp; }
    // Bytes fed but not yet returned as frames.
    size_t buffered() const { return size_ - head_; }

  private:
    struct PendingFd {
        uint64_t pos;  // stream offset of the byte the fd arrived with
        int fd;
    };

    Status CheckHeader(const dshm_hdr &hdr, size_t fds_here) const;
    Status Fail(Status s);
    void CloseAllFds();

    const Channel channel_;
    const Receiver receiver_;
    ClientRole role_;
    bool hello_seen_ = false;
    // Channel::kPeer: where the authentication handshake is.
    enum class PeerStage { kHello, kChallenge, kProof, kVerdict, kUp };
    PeerStage stage_ = PeerStage::kHello;
    Status error_;

    // Makes room for `len` more bytes at size_ (dropping consumed bytes
    // first when that is cheap).
    void Reserve(size_t len);

    // Fed bytes (not initialized beyond size_): [head_, size_) not yet
    // consumed; cap_ bytes allocated.
    std::unique_ptr<uint8_t[]> buf_;
    size_t cap_ = 0;
    size_t size_ = 0;
    size_t head_ = 0;
    uint64_t pos_ = 0;           // stream offset of buf_[head_]
    uint64_t fed_ = 0;           // stream offset of the next byte to be fed
    std::deque<PendingFd> fds_;  // increasing pos, all >= pos_
};

// "HELLO", "WRITEBACK", ... or "UNKNOWN(0x1234)".
std::string MsgTypeName(uint16_t type);

// 1..DSHM_SEGNAME_LEN-1 characters of [A-Za-z0-9._-], and not "." or "..".
bool IsValidSegmentName(std::string_view name);

// Copies `name` into a fixed NUL-padded field (the whole field is written).
// Returns false and leaves dst untouched if name does not fit with its NUL
// (name.size() >= N) or contains a NUL.
template <size_t N>
bool SetName(char (&dst)[N], std::string_view name) {
    if (name.size() >= N || name.find('\0') != std::string_view::npos) {
        return false;
    }
    memset(dst, 0, N);
    memcpy(dst, name.data(), name.size());
    return true;
}

// The name in a fixed field: the characters before the first NUL (all N if
// there is none; validated frames always have one).
template <size_t N>
std::string_view NameOf(const char (&src)[N]) {
    return std::string_view(src, strnlen(src, N));
}

// Encodes one message: a header {DSHM_MAGIC, type, 0, len, tag} followed by
// fixed[0, fixed_len) and extra[0, extra_len).  No validation: the caller
// builds correct messages (tests run them through a FrameReader).
// REQUIRES: fixed_len + extra_len <= DSHM_MAX_PAYLOAD; a pointer may be null
//           only when its length is 0.
std::vector<uint8_t> Encode(uint16_t type, uint32_t tag, const void *fixed, size_t fixed_len,
                            const void *extra = nullptr, size_t extra_len = 0);

// Encode() of a message whose length derives from input (CTL_REPLY): nullopt
// instead of a message when fixed_len + extra_len > DSHM_MAX_PAYLOAD, which
// the caller reports as an error.  Encode() itself REQUIRES the bound: its
// callers' lengths are bounded by construction.
std::optional<std::vector<uint8_t>> EncodeBounded(uint16_t type, uint32_t tag, const void *fixed,
                                                  size_t fixed_len, const void *extra = nullptr,
                                                  size_t extra_len = 0);

// Encode() of a wire struct, plus optional variable bytes.
template <typename T>
std::vector<uint8_t> EncodeMsg(uint16_t type, uint32_t tag, const T &fixed,
                               const void *extra = nullptr, size_t extra_len = 0) {
    static_assert(std::is_trivially_copyable_v<T> && std::is_standard_layout_v<T>);
    return Encode(type, tag, &fixed, sizeof(T), extra, extra_len);
}

// The header and fixed struct of a message whose `extra_len` variable bytes
// the caller sends right after them from where they lie (Conn::SendGather):
// hdr.len counts them.
template <typename T>
std::vector<uint8_t> EncodeHead(uint16_t type, uint32_t tag, const T &fixed, size_t extra_len) {
    std::vector<uint8_t> out = EncodeMsg(type, tag, fixed);
    const uint32_t len = static_cast<uint32_t>(sizeof(T) + extra_len);
    memcpy(out.data() + offsetof(dshm_hdr, len), &len, sizeof len);
    return out;
}

// Encode() of a message with an empty payload (DETACH, READY).
inline std::vector<uint8_t> EncodeEmpty(uint16_t type, uint32_t tag) {
    return Encode(type, tag, nullptr, 0);
}

// An ERROR message for a failed status: status code, ref_type, and the
// status message cut to DSHM_ERROR_TEXT_MAX bytes (at a UTF-8 character
// boundary).  REQUIRES: !status.ok().
std::vector<uint8_t> EncodeError(uint32_t tag, const Status &status, uint16_t ref_type);

}  // namespace dshm
