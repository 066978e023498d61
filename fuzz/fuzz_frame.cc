// fuzz_frame: the FrameReader alone (hostd/frame.h), the validation
// boundary of every socket, at the speed of a pure function: what
// fuzz_peer and fuzz_client reach through a whole Daemon a few hundred
// times a second, this runs tens of thousands of times.
//
// Input: byte 0 picks the reading end (peer; dshmd on a client socket;
// libdshm-client; dshmctl), byte 1 the chunking, byte 2 where fds arrive;
// the rest is the stream (see below for the chunking and the fds).  Two readers get the same
// stream, one in a single Feed, the other in chunks (alternating Feed and Prepare/Commit, with fds
// added before the chunk at the chosen offsets); both must yield the same
// frames and the same verdict.  Every frame must hold what frame.h
// promises (magic, flags 0, len == payload size, the fd count of its type,
// re-encoding gives the bytes consumed), and every fd handed to a reader
// must be closed once the reader and its frames are gone.
#include <fcntl.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <vector>

#include "fuzz_check.h"
#include "frame.h"

using namespace dshm;

namespace {

struct Result {
    std::vector<std::vector<uint8_t>> frames;  // header + payload as received
    std::vector<size_t> nfds;
    bool failed = false;
    int code = 0;
};

FrameReader Make(uint8_t end) {
    switch (end % 4) {
        case 0:
            return FrameReader(Channel::kPeer, Receiver::kDaemon, ClientRole::kUnknown);
        case 1:
            return FrameReader(Channel::kClient, Receiver::kDaemon, ClientRole::kUnknown);
        case 2:
            return FrameReader(Channel::kClient, Receiver::kClient, ClientRole::kClient);
        default:
            return FrameReader(Channel::kClient, Receiver::kClient, ClientRole::kCtl);
    }
}

// Takes every frame out; checks each against frame.h's promises.
void Drain(FrameReader &r, Result *out, std::vector<int> *handed) {
    for (;;) {
        std::optional<Frame> f;
        Status st = r.Next(&f);
        if (!st.ok()) {
            FUZZ_CHECK(!f && r.failed());
            FUZZ_CHECK(st.code() == DSHM_E_PROTO || st.code() == DSHM_E_VERSION ||
                       (st.code() == DSHM_E_AUTH && r.channel() == Channel::kPeer));
            out->failed = true;
            out->code = st.code();
            return;
        }
        if (!f)
            return;
        FUZZ_CHECK(f->hdr.magic == DSHM_MAGIC && f->hdr.flags == 0);
        FUZZ_CHECK(f->hdr.len == f->payload.size() && f->hdr.len <= DSHM_MAX_PAYLOAD);
        const bool has_fd = f->hdr.type == DSHM_MSG_ATTACHED || f->hdr.type == DSHM_MSG_UFFD;
        FUZZ_CHECK(f->fds.size() == (has_fd ? 1u : 0u));
        std::vector<uint8_t> again =
            Encode(f->hdr.type, f->hdr.tag, f->payload.data(), f->payload.size());
        out->frames.push_back(std::move(again));
        out->nfds.push_back(f->fds.size());
        for (size_t i = 0; i < f->fds.size(); i++)
            handed->push_back(f->TakeFd(i));  // we own it now
        // A peer's proof: taken as verified (dshmd checks it; here the
        // reader's other frames are the subject), so the rest is reached.
        if (f->hdr.type == DSHM_MSG_AUTH_PROOF)
            r.SetAuthenticated();
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 3)
        return 0;
    const uint8_t end = data[0], chunking = data[1], fdpos = data[2];
    data += 3;
    size -= 3;
    std::vector<int> made, handed;

    // Whole: one Feed, with an fd before it when fdpos says so (offset 0).
    Result whole;
    {
        FrameReader r = Make(end);
        if (fdpos & 1) {
            int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
            made.push_back(fd);
            r.AddFds(std::span<const int>(&fd, 1));
        }
        r.Feed(data, size);
        Drain(r, &whole, &handed);
    }
    // Chunked: chunking 0 cuts at message boundaries (as the headers say),
    // else chunks of 1 + (chunking-derived) bytes.  Fds: at offset 0 (fdpos
    // bit 0, as for the whole stream), before every ATTACHED or UFFD that
    // starts a chunk (bit 1: where they belong), before chunks at multiples
    // of 16 bytes (bit 2: anywhere).
    Result chunked;
    bool chunked_fd_moved = false;
    {
        FrameReader r = Make(end);
        size_t off = 0, i = 0;
        while (off < size) {
            size_t step = 1 + ((chunking >> (i % 4 * 2)) & 3) * (1 + chunking % 61);
            bool carries = false;
            if (chunking == 0) {
                step = size - off;
                if (size - off >= sizeof(dshm_hdr)) {
                    dshm_hdr h;
                    memcpy(&h, data + off, sizeof h);
                    step = std::min<uint64_t>(size - off, sizeof h + uint64_t(h.len));
                    carries = h.type == DSHM_MSG_ATTACHED || h.type == DSHM_MSG_UFFD;
                }
            }
            const size_t n = std::min(step, size - off);
            const bool at0 = (fdpos & 1) && off == 0;
            const bool moved =
                off > 0 && (((fdpos & 2) && carries) || ((fdpos & 4) && off % 16 == 0));
            if (at0 || moved) {
                int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
                made.push_back(fd);
                r.AddFds(std::span<const int>(&fd, 1));
                chunked_fd_moved = chunked_fd_moved || moved;
            }
            if (i % 2 == 0) {
                r.Feed(data + off, n);
            } else {
                uint8_t *p = r.Prepare(n + (chunking & 8));
                memcpy(p, data + off, n);
                r.Commit(n);
            }
            Drain(r, &chunked, &handed);
            off += n;
            i++;
        }
        Drain(r, &chunked, &handed);
    }
    // Same frames, same verdict (unless the chunked reader got an extra fd).
    if (!chunked_fd_moved) {
        FUZZ_CHECK(whole.failed == chunked.failed && whole.code == chunked.code);
        FUZZ_CHECK(whole.frames == chunked.frames && whole.nfds == chunked.nfds);
    } else {
        // An extra fd changes the verdict from where it arrived: the frames
        // before agree.
        const size_t n = std::min(chunked.frames.size(), whole.frames.size());
        for (size_t k = 0; k + 1 < n; k++)
            FUZZ_CHECK(chunked.frames[k] == whole.frames[k]);
    }
    // The frames' bytes are the stream's prefix.
    size_t pos = 0;
    for (const auto &f : whole.frames) {
        FUZZ_CHECK(pos + f.size() <= size && memcmp(data + pos, f.data(), f.size()) == 0);
        pos += f.size();
    }
    // Every fd not handed out was closed by the readers.
    for (int fd : handed)
        close(fd);
    for (int fd : made)
        FUZZ_CHECK(fcntl(fd, F_GETFD) == -1 && errno == EBADF);
    return 0;
}
