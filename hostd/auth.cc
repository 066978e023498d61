#include "auth.h"

#include <fcntl.h>
#include <glib.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace dshm {
namespace {

constexpr char kContext[] = "dshm peer auth v3";  // with its NUL (wire.h)

std::string Octal(mode_t m) {
    char buf[16];
    snprintf(buf, sizeof buf, "%04o", unsigned(m & 07777));
    return buf;
}

Status Random(uint8_t *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom(buf + got, n - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return Status::Internal(std::string("getrandom: ") + strerror(errno));
        got += static_cast<size_t>(r);
    }
    return Status::OK();
}

void PutLe(std::vector<uint8_t> *out, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; i++)
        out->push_back(static_cast<uint8_t>(v >> (8 * i)));
}

}  // namespace

Status LoadAuthKey(const std::string &path, std::vector<uint8_t> *key) {
    const std::string hint = " (create one with `dshmctl keygen " + path +
                             "` and copy it to every host; docs: README, 'Using dshm on real "
                             "hosts')";
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return Status::Internal("auth key " + path + ": " + strerror(errno) + hint);
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return Status::Internal("auth key " + path + ": " + strerror(e));
    }
    Status bad;
    if (!S_ISREG(st.st_mode)) {
        bad = Status::Auth("auth key " + path + ": not a regular file");
    } else if (st.st_mode & 077) {
        bad = Status::Auth("auth key " + path + ": mode " + Octal(st.st_mode) +
                           " gives group or others access to it; refusing a key others may "
                           "read (chmod 600 " +
                           path + ")");
    } else if (st.st_uid != 0 && st.st_uid != geteuid()) {
        bad = Status::Auth("auth key " + path + ": owned by uid " + std::to_string(st.st_uid) +
                           ", neither root nor dshmd's user");
    } else if (st.st_size < off_t(kMinAuthKeyBytes) || st.st_size > off_t(kMaxAuthKeyBytes)) {
        bad = Status::Auth("auth key " + path + ": " + std::to_string(st.st_size) +
                           " bytes; a key is " + std::to_string(kMinAuthKeyBytes) + ".." +
                           std::to_string(kMaxAuthKeyBytes) + " bytes" + hint);
    }
    if (!bad.ok()) {
        close(fd);
        return bad;
    }
    std::vector<uint8_t> k(static_cast<size_t>(st.st_size));
    size_t got = 0;
    while (got < k.size()) {
        ssize_t r = read(fd, k.data() + got, k.size() - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += static_cast<size_t>(r);
    }
    close(fd);
    if (got != k.size())
        return Status::Internal("auth key " + path + ": short read");
    *key = std::move(k);
    return Status::OK();
}

Status WriteNewAuthKey(const std::string &path) {
    uint8_t k[32];
    Status st = Random(k, sizeof k);
    if (!st.ok())
        return st;
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return Status::Internal(path + ": " + strerror(errno));
    // The umask cannot widen 0600; fchmod in case it narrowed it to 0400.
    fchmod(fd, 0600);
    bool ok = write(fd, k, sizeof k) == ssize_t(sizeof k) && fsync(fd) == 0;
    int e = errno;
    ok = close(fd) == 0 && ok;
    memset(k, 0, sizeof k);
    if (!ok) {
        unlink(path.c_str());
        return Status::Internal(path + ": " + strerror(e));
    }
    return Status::OK();
}

const std::vector<uint8_t> &NoAuthKey() {
    static const std::vector<uint8_t> key = [] {
        const char text[] = "dshm auth = off: this key is public";
        return std::vector<uint8_t>(text, text + sizeof text - 1);
    }();
    return key;
}

AuthMac AuthProof(const std::vector<uint8_t> &key, uint32_t sender, uint32_t receiver,
                  uint64_t sender_incarnation, uint64_t receiver_incarnation,
                  const AuthNonce &sender_nonce, const AuthNonce &receiver_nonce) {
    std::vector<uint8_t> msg(kContext, kContext + sizeof kContext);
    PutLe(&msg, sender, 4);
    PutLe(&msg, receiver, 4);
    PutLe(&msg, sender_incarnation, 8);
    PutLe(&msg, receiver_incarnation, 8);
    msg.insert(msg.end(), sender_nonce.begin(), sender_nonce.end());
    msg.insert(msg.end(), receiver_nonce.begin(), receiver_nonce.end());
    GHmac *h = g_hmac_new(G_CHECKSUM_SHA256, key.data(), key.size());
    g_hmac_update(h, msg.data(), static_cast<gssize>(msg.size()));
    AuthMac mac{};
    gsize len = mac.size();
    g_hmac_get_digest(h, mac.data(), &len);
    g_hmac_unref(h);
    return mac;
}

bool ConstantTimeEqual(const uint8_t *a, const uint8_t *b, size_t n) {
    volatile uint8_t diff = 0;
    for (size_t i = 0; i < n; i++)
        diff = diff | (a[i] ^ b[i]);
    return diff == 0;
}

Handshake::Handshake(const std::vector<uint8_t> &key, uint32_t host, uint64_t incarnation)
    : key_(key), host_(host), incarnation_(incarnation) {
    Status st = Random(nonce_.data(), nonce_.size());
    if (!st.ok()) {
        // getrandom on Linux >= 3.17 does not fail for 32 bytes once the
        // pool is initialised; a broken one must not yield a fixed nonce.
        g_error("peer authentication: %s", st.ToString().c_str());
    }
}

std::vector<uint8_t> Handshake::ChallengeMsg() const {
    dshm_auth_challenge c;
    memcpy(c.nonce, nonce_.data(), nonce_.size());
    return EncodeMsg(DSHM_MSG_AUTH_CHALLENGE, 0, c);
}

void Handshake::OnHello(const dshm_hello &h) {
    peer_host_ = h.host_id;
    peer_incarnation_ = h.incarnation;
}

std::vector<uint8_t> Handshake::OnChallenge(const Frame &f) {
    const auto c = f.Fixed<dshm_auth_challenge>();
    memcpy(peer_nonce_.data(), c.nonce, peer_nonce_.size());
    const AuthMac mac =
        AuthProof(key_, host_, peer_host_, incarnation_, peer_incarnation_, nonce_, peer_nonce_);
    dshm_auth_proof p;
    memcpy(p.mac, mac.data(), mac.size());
    return EncodeMsg(DSHM_MSG_AUTH_PROOF, 0, p);
}

Status Handshake::Verify(const Frame &f) const {
    const auto p = f.Fixed<dshm_auth_proof>();
    const AuthMac want =
        AuthProof(key_, peer_host_, host_, peer_incarnation_, incarnation_, peer_nonce_, nonce_);
    if (!ConstantTimeEqual(p.mac, want.data(), want.size())) {
        return Status::Auth("authentication failed: the proof of host " +
                            std::to_string(peer_host_) +
                            " does not verify (another key, or auth differs between the hosts)");
    }
    return Status::OK();
}

}  // namespace dshm
