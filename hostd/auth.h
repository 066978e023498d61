// Peer authentication: the cluster's shared key and the challenge-response
// of every peer connection (docs/protocol.md section 2.1).
//
// Each side of a peer connection sends HELLO and AUTH_CHALLENGE (a fresh
// 32-byte nonce from getrandom); once it has the other side's HELLO and
// nonce it sends AUTH_PROOF = HMAC-SHA256(key, context || sender id ||
// receiver id || sender incarnation || receiver incarnation || sender
// nonce || receiver nonce) (wire.h).  A side trusts the connection once the
// other's proof equals the one it computes for the other's direction
// (compared in constant time).  Fresh nonces make a recorded proof useless
// on another connection; the sender's id first makes a proof useless in
// the other direction (a reflection), since the two ends' ids differ.
// The FrameReader (frame.h) lets no other peer message through before the
// receiver called SetAuthenticated: the enforcement is at the one input
// boundary, not in the handlers.
//
// Key file: the bytes of the file are the key (32..4096 bytes: `dshmctl
// keygen FILE` writes 32 random ones; a corosync authkey fits too).  It
// must be a regular file owned by root or by dshmd's user and give group
// and others no access (mode 0600 or 0400): LoadAuthKey refuses it
// otherwise, as ssh does a private key.
//
// `auth = off` (config.h) keeps the handshake but keys it with
// NoAuthKey(), a public constant: hosts with auth off talk to each other,
// a host with auth on refuses them (their proofs do not verify).
//
// Thread safety: plain values and functions; a Handshake belongs to one
// connection.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "dshm/wire.h"
#include "frame.h"
#include "status.h"

namespace dshm {

constexpr size_t kMinAuthKeyBytes = 32;
constexpr size_t kMaxAuthKeyBytes = 4096;

// Reads the key file at `path` after checking it as above.  Errors name the
// file and say what to do (E_AUTH for a bad mode, owner or size; E_INTERNAL
// when it cannot be read).
Status LoadAuthKey(const std::string &path, std::vector<uint8_t> *key);

// Creates `path` (it must not exist) with mode 0600 holding 32 random bytes
// (getrandom): `dshmctl keygen`.
Status WriteNewAuthKey(const std::string &path);

// The public key of `auth = off`.
const std::vector<uint8_t> &NoAuthKey();

using AuthNonce = std::array<uint8_t, DSHM_AUTH_NONCE_LEN>;
using AuthMac = std::array<uint8_t, DSHM_AUTH_PROOF_LEN>;

// The proof that `sender` sends `receiver` (wire.h, dshm_auth_proof).
AuthMac AuthProof(const std::vector<uint8_t> &key, uint32_t sender, uint32_t receiver,
                  uint64_t sender_incarnation, uint64_t receiver_incarnation,
                  const AuthNonce &sender_nonce, const AuthNonce &receiver_nonce);

// Equal, in time independent of where they differ.
bool ConstantTimeEqual(const uint8_t *a, const uint8_t *b, size_t n);

// One connection's handshake, seen from this host.
class Handshake {
  public:
    // Draws this side's nonce.  `key` must outlive the Handshake.
    Handshake(const std::vector<uint8_t> &key, uint32_t host, uint64_t incarnation);

    // This side's AUTH_CHALLENGE (send it right after this side's HELLO).
    std::vector<uint8_t> ChallengeMsg() const;
    // The other side's HELLO, as the FrameReader yielded it.
    void OnHello(const dshm_hello &h);
    // The other side's AUTH_CHALLENGE: this side's AUTH_PROOF, to send.
    // REQUIRES: OnHello before.
    std::vector<uint8_t> OnChallenge(const Frame &f);
    // The other side's AUTH_PROOF: OK when it proves the key for this
    // connection, else E_AUTH.  REQUIRES: OnChallenge before.
    Status Verify(const Frame &f) const;

    uint32_t peer_host() const { return peer_host_; }
    uint64_t peer_incarnation() const { return peer_incarnation_; }

  private:
    const std::vector<uint8_t> &key_;
    const uint32_t host_;
    const uint64_t incarnation_;
    AuthNonce nonce_{};
    uint32_t peer_host_ = 0;
    uint64_t peer_incarnation_ = 0;
    AuthNonce peer_nonce_{};
};

}  // namespace dshm
