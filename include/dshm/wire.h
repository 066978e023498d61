/*
 * dshm wire format: the one definition of every message exchanged by
 *   - dshmd and its local clients (patched QEMU, libdshm-client, dshmctl)
 *     over the unix socket of the host (client channel), and
 *   - dshmd and dshmd over TCP between hosts (peer channel),
 * and of the ivshmem BAR0 DSM registers seen by guests.
 *
 * This header is C (C99 + _Static_assert) so that dshmd (C++20), the QEMU
 * patch (C) and the guest tools (C++20) share it verbatim.  docs/protocol.md
 * is the prose specification: state machines, ordering, visibility.
 *
 * Encoding rules (MUST):
 *   - Every message is one struct dshm_hdr followed by hdr.len payload bytes.
 *   - All integers are little-endian; every struct below has explicit sizes,
 *     natural alignment and no implicit padding (checked by the asserts at
 *     the end of this file).  dshm runs on little-endian hosts only.
 *   - Fixed payloads have exactly the size of their struct; variable payloads
 *     are a fixed struct followed by the bytes described at the type.
 *   - Names (segment, VM) are NUL-padded and MUST contain a NUL.
 *   - A receiver checks hdr.magic, hdr.type, hdr.len against the bounds for
 *     the type and channel BEFORE looking at the payload; a message that
 *     fails any check is a protocol error: the receiver logs it and closes
 *     the connection.
 *   - File descriptors travel as SCM_RIGHTS ancillary data on the client
 *     channel only, attached to the first byte of the message that carries
 *     them (DSHM_MSG_ATTACHED: the segment memfd; DSHM_MSG_UFFD: the uffd).
 */
#ifndef DSHM_WIRE_H
#define DSHM_WIRE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DSHM_MAGIC            0x4d485344u /* "DSHM" as little-endian bytes */
#define DSHM_PROTO_VERSION    2u
/* The peer channel's HELLO carries its own version: 3 added the
 * authentication handshake (AUTH_CHALLENGE, AUTH_PROOF) that must follow
 * it, so a dshmd of version 2, which sends none, is refused with E_VERSION
 * instead of failing later.  The client channel is unchanged (version 2). */
#define DSHM_PEER_VERSION     3u
#define DSHM_AUTH_NONCE_LEN   32u  /* bytes of an AUTH_CHALLENGE nonce */
#define DSHM_AUTH_PROOF_LEN   32u  /* bytes of an AUTH_PROOF (HMAC-SHA256) */
#define DSHM_PAGE_SIZE        4096u
#define DSHM_PAGE_SHIFT       12u
#define DSHM_SEGNAME_LEN      32u  /* segment names: 1..31 chars + NUL */
#define DSHM_VMNAME_LEN       64u  /* VM / client names: 0..63 chars + NUL */
#define DSHM_MAX_LOCKS        256u /* lock ids per segment: 0..255 */
#define DSHM_MAX_HOSTS        64u  /* host ids: 0..63 (copy sets are bitmasks) */
#define DSHM_MAX_PAYLOAD      (1u << 20) /* absolute bound, any type */
#define DSHM_MAX_INVAL_PAGES  1024u /* pages per INVALIDATE / INVAL_ACK */
#define DSHM_MAX_LOCK_ENTRIES 1024u /* lock table entries per OWN_LOCKS */

/* ------------------------------------------------------------------ */
/* Header                                                              */
/* ------------------------------------------------------------------ */

struct dshm_hdr {
    uint32_t magic;   /* DSHM_MAGIC */
    uint16_t type;    /* enum dshm_msg_type */
    uint16_t flags;   /* per type; 0 unless stated */
    uint32_t len;     /* payload bytes after this header */
    uint32_t tag;     /* request id chosen by the requester, echoed in the reply */
};

enum dshm_msg_type {
    /* both channels */
    DSHM_MSG_HELLO          = 0x0001, /* struct dshm_hello */
    DSHM_MSG_ERROR          = 0x0002, /* struct dshm_error + text */

    /* client channel: client -> dshmd */
    DSHM_MSG_ATTACH         = 0x0010, /* struct dshm_attach */
    DSHM_MSG_UFFD           = 0x0011, /* struct dshm_uffd, + uffd fd */
    DSHM_MSG_ACQUIRE        = 0x0012, /* struct dshm_lock_req */
    DSHM_MSG_RELEASE        = 0x0013, /* struct dshm_lock_req */
    DSHM_MSG_DETACH         = 0x0014, /* empty */
    DSHM_MSG_CTL_QUERY      = 0x0015, /* struct dshm_ctl_query (dshmctl) */
    DSHM_MSG_MIGRATE_OUT    = 0x0016, /* empty: the VM stopped to migrate away */
    DSHM_MSG_ADOPT          = 0x0017, /* struct dshm_handoff: the VM arrived */
    /* client channel: dshmd -> client */
    DSHM_MSG_ATTACHED       = 0x0020, /* struct dshm_attached, + memfd */
    DSHM_MSG_READY          = 0x0021, /* empty: faults are served from now on */
    DSHM_MSG_GRANTED        = 0x0022, /* struct dshm_lock_reply */
    DSHM_MSG_RELEASED       = 0x0023, /* struct dshm_lock_reply */
    DSHM_MSG_LOCK_FAILED    = 0x0024, /* struct dshm_lock_reply (status != 0) */
    DSHM_MSG_CTL_REPLY      = 0x0025, /* JSON text, not NUL-terminated */
    DSHM_MSG_MIGRATE_READY  = 0x0026, /* struct dshm_handoff */
    DSHM_MSG_ADOPTED        = 0x0027, /* struct dshm_adopted */

    /* peer channel (dshmd <-> dshmd) */
    DSHM_MSG_FETCH          = 0x0040, /* struct dshm_fetch */
    DSHM_MSG_PAGE           = 0x0041, /* struct dshm_page + DSHM_PAGE_SIZE bytes */
    DSHM_MSG_P_ACQUIRE      = 0x0042, /* struct dshm_p_lock */
    DSHM_MSG_P_GRANT        = 0x0043, /* struct dshm_p_lock */
    DSHM_MSG_WRITEBACK      = 0x0044, /* struct dshm_writeback + encoded diff */
    DSHM_MSG_P_RELEASE      = 0x0045, /* struct dshm_p_release */
    DSHM_MSG_P_RELEASE_ACK  = 0x0046, /* struct dshm_p_release_ack */
    DSHM_MSG_INVALIDATE     = 0x0047, /* struct dshm_pagelist + u32 pages[count] */
    DSHM_MSG_INVAL_ACK      = 0x0048, /* struct dshm_pagelist + u32 entries[count] */
    DSHM_MSG_UPDATE         = 0x0049, /* struct dshm_writeback + encoded diff */
    DSHM_MSG_UPDATE_ACK     = 0x004a, /* struct dshm_page (no data) */
    DSHM_MSG_CLIENT_GONE    = 0x004b, /* struct dshm_p_lock (lock_id ignored) */
    /* live migration of a VM (docs/protocol.md section 11) */
    DSHM_MSG_P_FLUSH        = 0x004c, /* struct dshm_p_flush */
    DSHM_MSG_P_FLUSH_ACK    = 0x004d, /* struct dshm_p_release_ack, lock_id 0 */
    DSHM_MSG_P_ADOPT        = 0x004e, /* struct dshm_p_adopt */
    DSHM_MSG_P_ADOPTED      = 0x004f, /* struct dshm_p_adopted */
    DSHM_MSG_DROP_COPY      = 0x0050, /* struct dshm_seg_note */
    /* access monitor (section 12) */
    DSHM_MSG_P_STATS        = 0x0051, /* struct dshm_stats + dshm_vm_activity[count] */
    /* ownership transfer (section 13) */
    DSHM_MSG_OWN_MOVING     = 0x0052, /* struct dshm_seg_note (host_id: new owner) */
    DSHM_MSG_OWN_MOVING_ACK = 0x0053, /* struct dshm_seg_note */
    DSHM_MSG_OWN_PAGE       = 0x0054, /* struct dshm_page + DSHM_PAGE_SIZE bytes */
    DSHM_MSG_OWN_LOCKS      = 0x0055, /* struct dshm_pagelist + dshm_lock_entry[count] */
    DSHM_MSG_OWN_COPYSETS   = 0x0056, /* struct dshm_copysets + uint64_t[count] */
    DSHM_MSG_OWN_COMMIT     = 0x0057, /* struct dshm_seg_note + reason text */
    DSHM_MSG_OWN_MOVED      = 0x0058, /* struct dshm_seg_note + reason text */
    /* single-writer pages (section 6.1; version 2) */
    DSHM_MSG_EXCL_GRANT     = 0x0059, /* struct dshm_pagelist + u32 pages[count] */
    DSHM_MSG_EXCL_REVOKE    = 0x005a, /* struct dshm_pagelist + u32 pages[count] */
    DSHM_MSG_EXCL_REVOKED   = 0x005b, /* struct dshm_pagelist + u32 pages[count] */
    /* peer authentication (section 2.1; peer version 3): right after HELLO,
     * each way; no other peer message before both proofs checked */
    DSHM_MSG_AUTH_CHALLENGE = 0x005c, /* struct dshm_auth_challenge */
    DSHM_MSG_AUTH_PROOF     = 0x005d, /* struct dshm_auth_proof */
};

/* ------------------------------------------------------------------ */
/* Status codes (ERROR, LOCK_FAILED, P_RELEASE_ACK)                    */
/* ------------------------------------------------------------------ */

enum dshm_status {
    DSHM_OK                 = 0,
    DSHM_E_PROTO            = 1,  /* malformed or unexpected message */
    DSHM_E_VERSION          = 2,  /* protocol version not supported */
    DSHM_E_NO_SEGMENT       = 3,  /* unknown segment name */
    DSHM_E_BAD_LOCK         = 4,  /* lock id >= DSHM_MAX_LOCKS */
    DSHM_E_NOT_HELD         = 5,  /* release of a lock the client does not hold */
    DSHM_E_PENDING          = 6,  /* a request for this lock is already pending */
    DSHM_E_ALREADY_HELD     = 7,  /* acquire of a lock the client holds */
    DSHM_E_OWNER_LOST       = 8,  /* the owner host is unreachable */
    DSHM_E_NOT_ATTACHED     = 9,  /* lock request before ATTACH/UFFD */
    DSHM_E_UFFD             = 10, /* the uffd was unusable (features, range) */
    DSHM_E_INTERNAL         = 11,
    DSHM_E_NOT_OWNER        = 12, /* peer request to a non-owner of the segment */
    DSHM_E_BUSY             = 13, /* too many requests waiting (a bound of section 2) */
    DSHM_E_NO_QUORUM        = 14, /* this host's cluster partition has no quorum */
    DSHM_E_AUTH             = 15, /* peer authentication failed; a client not allowed */
};

/* ------------------------------------------------------------------ */
/* Payloads                                                            */
/* ------------------------------------------------------------------ */

enum dshm_role {
    DSHM_ROLE_CLIENT = 1, /* a VM (QEMU) or libdshm-client user */
    DSHM_ROLE_PEER   = 2, /* another dshmd */
    DSHM_ROLE_CTL    = 3, /* dshmctl */
};

/* HELLO: first message each way on every connection. */
struct dshm_hello {
    uint16_t version;   /* DSHM_PROTO_VERSION */
    uint16_t role;      /* enum dshm_role */
    uint32_t host_id;   /* peers: the sender's host id; clients: 0 */
    uint64_t incarnation; /* peers: changes each time dshmd starts */
    char name[DSHM_VMNAME_LEN]; /* host name, or client/VM name */
};

/* AUTH_CHALLENGE: the sender's fresh random nonce (getrandom), sent right
 * after its HELLO on every peer connection. */
struct dshm_auth_challenge {
    uint8_t nonce[DSHM_AUTH_NONCE_LEN];
};

/* AUTH_PROOF: HMAC-SHA256 keyed with the cluster's key over
 *   "dshm peer auth v3\0" || sender host id (u32) || receiver host id (u32)
 *   || sender incarnation (u64) || receiver incarnation (u64)
 *   || sender nonce || receiver nonce
 * (integers little-endian; ids and incarnations as the two HELLOs said),
 * sent once the other side's HELLO and AUTH_CHALLENGE arrived. */
struct dshm_auth_proof {
    uint8_t mac[DSHM_AUTH_PROOF_LEN];
};

/* ERROR: the sender is about to close the connection (or refuses a request). */
struct dshm_error {
    uint32_t status;    /* enum dshm_status */
    uint16_t ref_type;  /* type of the message that caused it, or 0 */
    uint16_t reserved;
    /* followed by 0..1024 bytes of UTF-8 text, not NUL-terminated */
};
#define DSHM_ERROR_TEXT_MAX 1024u

/* ATTACH: a client asks to map a segment. */
struct dshm_attach {
    char segment[DSHM_SEGNAME_LEN];
    char vm_name[DSHM_VMNAME_LEN]; /* libvirt domain name, or a process name */
    uint8_t vm_uuid[16];           /* all zero if unknown */
};

/* ATTACHED: reply to ATTACH; SCM_RIGHTS carries the segment memfd. */
struct dshm_attached {
    uint64_t size;        /* bytes, a multiple of DSHM_PAGE_SIZE */
    uint32_t page_size;   /* DSHM_PAGE_SIZE */
    uint32_t nlocks;      /* DSHM_MAX_LOCKS */
    uint32_t client_id;   /* unique on this host while dshmd runs */
    uint32_t owner_host;  /* current owner host id */
    uint64_t uffd_features; /* UFFD_FEATURE_* the client MUST request */
    uint64_t uffd_ioctls;   /* UFFDIO_REGISTER_MODE_* the client MUST register */
};

/* UFFD: the client mapped the memfd at [base, base+length) and registered it
 * with the userfaultfd passed in SCM_RIGHTS. */
struct dshm_uffd {
    uint64_t base;
    uint64_t length;      /* MUST equal dshm_attached.size */
};

/* ACQUIRE / RELEASE from a client. */
struct dshm_lock_req {
    uint32_t lock_id;
    uint32_t flags;       /* 0 */
};

/* GRANTED / RELEASED / LOCK_FAILED to a client. */
struct dshm_lock_reply {
    uint32_t lock_id;
    uint32_t status;          /* enum dshm_status; 0 for GRANTED/RELEASED */
    uint32_t pages_written;   /* RELEASED: pages written back to the owner */
    uint32_t bytes_written;   /* RELEASED: diff bytes written back */
};

enum dshm_ctl_what {
    DSHM_CTL_SEGMENTS = 1,
    DSHM_CTL_PEERS    = 2,
    DSHM_CTL_STATS    = 3,
};

struct dshm_ctl_query {
    uint32_t what;        /* enum dshm_ctl_what */
    uint32_t flags;
};

/* MIGRATE_READY (dshmd -> source VM) and ADOPT (destination VM -> dshmd):
 * the hand-off token that travels in the VM's migration stream.  The source
 * dshmd answers MIGRATE_OUT once the VM's writes reached the owner; the
 * destination VM presents the token so that the owner hands the source
 * client's locks (held and queued) to it.  pages/bytes_written: MIGRATE_READY
 * only (what the flush wrote back), 0 in ADOPT.  `incarnation` keeps its
 * name (QEMU stores it under that name) but is the token's secret: a
 * random 64-bit value the source dshmd draws at MIGRATE_OUT and sends the
 * owner in P_FLUSH; the owner adopts only with it (docs/protocol.md
 * section 11). */
struct dshm_handoff {
    uint32_t host_id;     /* host of the source client */
    uint32_t client_id;   /* the source client's id on that host */
    uint64_t incarnation; /* the hand-off secret (random, drawn at MIGRATE_OUT) */
    uint32_t pages_written;
    uint32_t bytes_written;
};

/* ADOPTED: the locks the VM holds and waits for after ADOPT (bit n of byte
 * n / 8 = lock n).  status != 0: the hand-off failed (the source's locks
 * were lost, e.g. E_OWNER_LOST); the VM holds nothing. */
struct dshm_adopted {
    uint32_t status;
    uint32_t owner_host;
    uint8_t held[DSHM_MAX_LOCKS / 8];
    uint8_t queued[DSHM_MAX_LOCKS / 8];
};

/* Peer messages name segments by name. */
struct dshm_fetch {
    char segment[DSHM_SEGNAME_LEN];
    uint32_t page;        /* page index */
    uint32_t flags;       /* DSHM_FETCH_WRITE: the fault was a write */
};
#define DSHM_FETCH_WRITE 0x1u

/* PAGE (reply to FETCH) and UPDATE_ACK. */
struct dshm_page {
    char segment[DSHM_SEGNAME_LEN];
    uint32_t page;
    uint32_t status;      /* PAGE: 0, or an error (then no data follows) */
    /* PAGE with status 0: followed by DSHM_PAGE_SIZE bytes */
};

/* P_ACQUIRE / P_GRANT / CLIENT_GONE: a lock for (host, client). */
struct dshm_p_lock {
    char segment[DSHM_SEGNAME_LEN];
    uint32_t lock_id;
    uint32_t host_id;     /* the host of the client */
    uint32_t client_id;   /* unique within that host */
    uint32_t status;      /* P_GRANT: 0 or an error */
};

enum dshm_diff_encoding {
    DSHM_ENC_RUNS = 1, /* { u16 offset; u16 length; u8 bytes[length] }*, length > 0 */
    DSHM_ENC_MASK = 2, /* u8 mask[DSHM_PAGE_SIZE / 8], then one byte per set bit */
    DSHM_ENC_FULL = 3, /* DSHM_PAGE_SIZE bytes: every byte changed */
};

/* WRITEBACK: the changed bytes of one page, relative to the writer's twin.
 * The owner applies it as it arrives and keeps the bytes it replaced until
 * the P_RELEASE that follows: a release is all-or-nothing, so a refused or
 * cut-off release is undone (docs/protocol.md section 6).
 * UPDATE uses the same layout: the owner forwards a release's diff of a page
 * to a host that keeps that page dirty (it applies exactly those bytes). */
struct dshm_writeback {
    char segment[DSHM_SEGNAME_LEN];
    uint32_t page;
    uint16_t encoding;    /* enum dshm_diff_encoding */
    uint16_t reserved;
    /* followed by the encoded diff (hdr.len - sizeof(struct dshm_writeback) bytes) */
};

/* P_RELEASE: closes a release; `npages` WRITEBACKs precede it. */
struct dshm_p_release {
    char segment[DSHM_SEGNAME_LEN];
    uint32_t lock_id;
    uint32_t host_id;
    uint32_t client_id;
    uint32_t npages;
};

/* P_FLUSH: closes a migrating client's flush (section 11) as P_RELEASE
 * closes a release (the same fields first, lock_id 0), with the hand-off
 * secret of the client's token (dshm_handoff.incarnation). */
struct dshm_p_flush {
    char segment[DSHM_SEGNAME_LEN];
    uint32_t lock_id;     /* 0 */
    uint32_t host_id;
    uint32_t client_id;
    uint32_t npages;
    uint64_t token;
};

struct dshm_p_release_ack {
    char segment[DSHM_SEGNAME_LEN];
    uint32_t lock_id;
    uint32_t client_id;
    uint32_t status;
    uint32_t reserved;
};

/* INVALIDATE (owner -> holder) and INVAL_ACK (holder -> owner).
 * INVALIDATE lists page indexes.  INVAL_ACK lists what the host did with
 * them: a page index alone = punched (the host left the copy set), the index
 * with DSHM_INVAL_KEPT set = kept because local clients are writing it (the
 * owner answers with an UPDATE).  Pages the host did not have, or was
 * fetching, are not listed: the host stays in their copy set. */
#define DSHM_INVAL_KEPT 0x80000000u
struct dshm_pagelist {
    char segment[DSHM_SEGNAME_LEN];
    uint32_t count;       /* <= DSHM_MAX_INVAL_PAGES */
    uint32_t reserved;
    /* followed by uint32_t pages[count] */
};

/* P_ADOPT (destination host -> owner): rename the holder (from) to (to) in
 * every lock and queue of the segment, if (from) migrated out with hand-off
 * secret `token` (its P_FLUSH); the VM identity feeds the ownership policy
 * (section 13). */
struct dshm_p_adopt {
    char segment[DSHM_SEGNAME_LEN];
    uint32_t from_host;
    uint32_t from_client;
    uint32_t to_host;
    uint32_t to_client;
    char vm_name[DSHM_VMNAME_LEN];
    uint8_t vm_uuid[16];
    uint64_t token;       /* dshm_handoff.incarnation of the ADOPT */
};

/* P_ADOPTED (owner -> destination host). */
struct dshm_p_adopted {
    char segment[DSHM_SEGNAME_LEN];
    uint32_t to_client;
    uint32_t status;
    uint8_t held[DSHM_MAX_LOCKS / 8];
    uint8_t queued[DSHM_MAX_LOCKS / 8];
};

/* DROP_COPY, OWN_MOVING, OWN_MOVING_ACK, OWN_COMMIT, OWN_MOVED. */
struct dshm_seg_note {
    char segment[DSHM_SEGNAME_LEN];
    uint32_t host_id;     /* OWN_*: the new owner; DROP_COPY: the sender */
    uint32_t value;       /* OWN_COMMIT: OWN_PAGEs sent before it; else 0 */
    /* OWN_COMMIT, OWN_MOVED: followed by 0..DSHM_ERROR_TEXT_MAX bytes of
     * UTF-8 text, the reason of the move (not NUL-terminated) */
};

/* P_STATS: the access monitor's figures over the sliding window.  A host
 * reports its VMs to the owner (flags 0); the owner answers with the merged
 * view of every host (flags DSHM_STATS_MERGED). */
#define DSHM_STATS_MERGED 0x1u
#define DSHM_MAX_STATS_VMS 1024u
struct dshm_stats {
    char segment[DSHM_SEGNAME_LEN];
    uint32_t count;       /* entries that follow, <= DSHM_MAX_STATS_VMS */
    uint32_t flags;
};
struct dshm_vm_activity {
    char vm_name[DSHM_VMNAME_LEN];
    uint8_t vm_uuid[16];
    uint32_t host_id;     /* where the VM is attached (or was last seen) */
    uint32_t attached;    /* 1 while attached to that host */
    uint64_t read_faults;
    uint64_t write_faults;
    uint64_t pages_written_back;
    uint64_t bytes_written_back;
    uint64_t acquires;
    uint64_t hold_ns;
};

/* OWN_LOCKS entries: the lock table moving to the new owner.  pos 0 is the
 * holder; pos 1, 2, ... the waiters in FIFO order. */
struct dshm_lock_entry {
    uint32_t lock_id;
    uint32_t host_id;
    uint32_t client_id;
    uint32_t pos;
};

/* OWN_COPYSETS: copy sets of pages first_page .. first_page+count-1. */
#define DSHM_MAX_COPYSETS 65536u
struct dshm_copysets {
    char segment[DSHM_SEGNAME_LEN];
    uint32_t first_page;
    uint32_t count;       /* <= DSHM_MAX_COPYSETS */
};

/* ------------------------------------------------------------------ */
/* Guest interface: BAR0 of ivshmem-doorbell with dsm=on               */
/* ------------------------------------------------------------------ */
/*
 * With dsm=on BAR0 is DSHM_BAR0_SIZE bytes; all registers are 32 bits wide,
 * little-endian, accessed with aligned 32-bit loads and stores.  Offsets
 * 0x00-0x0F keep their stock meaning (INTRMASK, INTRSTATUS, IVPOSITION,
 * DOORBELL).  Accesses to any other offset read 0 and ignore writes (and
 * count in DSHM_REG_ERRORS).  No register access ever waits for dshmd: a
 * lock command is queued to dshmd and the access returns at once; the guest
 * polls the lock's register for the outcome.
 *
 *   offset  name         access  reset  meaning
 *   0x010   MAGIC        RO      DSHM_MAGIC ('DSHM'); 0 on a stock device
 *   0x014   VERSION      RO      DSHM_PROTO_VERSION
 *   0x018   NLOCKS       RO      DSHM_MAX_LOCKS
 *   0x01C   STATE        RO      DSHM_DEV_* below
 *   0x020   SIZE_LO      RO      segment size, low 32 bits
 *   0x024   SIZE_HI      RO      segment size, high 32 bits
 *   0x028   ERRORS       RO  0   guest requests refused so far (bad offset,
 *                                bad lock id, command not valid in the
 *                                lock's state)
 *   0x02C   LAST_ERROR   RO  0   (lock id << 16) | dshm_status of the last
 *                                refused request
 *   0x040   SEGNAME      RO      32 bytes: the segment name, NUL-padded
 *   0x800+4n LOCK[n]     RW  0   n < NLOCKS.  Write DSHM_LOCK_CMD_ACQUIRE or
 *                                DSHM_LOCK_CMD_RELEASE; read the lock state
 *                                DSHM_LOCK_* of this VM for lock n.
 *
 * Lock states seen through LOCK[n] (per VM; the lock is granted to the VM):
 *   FREE --ACQUIRE--> ACQUIRING --(granted)--> HELD --RELEASE--> RELEASING
 *   --(write-back done)--> FREE.  A request that dshmd refuses leaves
 *   DSHM_LOCK_ERROR | status until the next command.  A command that is
 *   not valid in the current state (ACQUIRE while ACQUIRING/HELD/RELEASING,
 *   RELEASE while not HELD) is refused without changing the state; ERRORS
 *   and LAST_ERROR record it.
 */
#define DSHM_BAR0_SIZE          0x1000u
#define DSHM_REG_MAGIC          0x010u
#define DSHM_REG_VERSION        0x014u
#define DSHM_REG_NLOCKS         0x018u
#define DSHM_REG_STATE          0x01Cu
#define DSHM_REG_SIZE_LO        0x020u
#define DSHM_REG_SIZE_HI        0x024u
#define DSHM_REG_ERRORS         0x028u
#define DSHM_REG_LAST_ERROR     0x02Cu
#define DSHM_REG_SEGNAME        0x040u /* DSHM_SEGNAME_LEN bytes */
#define DSHM_REG_LOCK_BASE      0x800u
#define DSHM_REG_LOCK(n)        (DSHM_REG_LOCK_BASE + 4u * (n))

enum dshm_dev_state {
    DSHM_DEV_DETACHED = 0, /* not (yet) attached to dshmd */
    DSHM_DEV_READY    = 1, /* attached: BAR2 is served by dshmd */
    DSHM_DEV_FAILED   = 2, /* the connection to dshmd was lost */
};

enum dshm_lock_cmd {
    DSHM_LOCK_CMD_ACQUIRE = 1,
    DSHM_LOCK_CMD_RELEASE = 2,
};

enum dshm_lock_state {
    DSHM_LOCK_FREE      = 0,
    DSHM_LOCK_ACQUIRING = 1,
    DSHM_LOCK_HELD      = 2,
    DSHM_LOCK_RELEASING = 3,
    DSHM_LOCK_ERROR     = 0x80, /* | enum dshm_status */
};

/* ------------------------------------------------------------------ */
/* Layout checks                                                       */
/* ------------------------------------------------------------------ */

/* _Static_assert is C11 only; C++ spells it static_assert. */
#ifdef __cplusplus
#define DSHM_STATIC_ASSERT(expr, msg) static_assert(expr, msg)
#else
#define DSHM_STATIC_ASSERT(expr, msg) _Static_assert(expr, msg)
#endif

DSHM_STATIC_ASSERT(sizeof(struct dshm_hdr) == 16, "dshm_hdr");
DSHM_STATIC_ASSERT(sizeof(struct dshm_hello) == 80, "dshm_hello");
DSHM_STATIC_ASSERT(sizeof(struct dshm_error) == 8, "dshm_error");
DSHM_STATIC_ASSERT(sizeof(struct dshm_auth_challenge) == 32, "dshm_auth_challenge");
DSHM_STATIC_ASSERT(sizeof(struct dshm_auth_proof) == 32, "dshm_auth_proof");
DSHM_STATIC_ASSERT(sizeof(struct dshm_attach) == 112, "dshm_attach");
DSHM_STATIC_ASSERT(sizeof(struct dshm_attached) == 40, "dshm_attached");
DSHM_STATIC_ASSERT(sizeof(struct dshm_uffd) == 16, "dshm_uffd");
DSHM_STATIC_ASSERT(sizeof(struct dshm_lock_req) == 8, "dshm_lock_req");
DSHM_STATIC_ASSERT(sizeof(struct dshm_lock_reply) == 16, "dshm_lock_reply");
DSHM_STATIC_ASSERT(sizeof(struct dshm_ctl_query) == 8, "dshm_ctl_query");
DSHM_STATIC_ASSERT(sizeof(struct dshm_fetch) == 40, "dshm_fetch");
DSHM_STATIC_ASSERT(sizeof(struct dshm_page) == 40, "dshm_page");
DSHM_STATIC_ASSERT(sizeof(struct dshm_p_lock) == 48, "dshm_p_lock");
DSHM_STATIC_ASSERT(sizeof(struct dshm_writeback) == 40, "dshm_writeback");
DSHM_STATIC_ASSERT(sizeof(struct dshm_p_release) == 48, "dshm_p_release");
DSHM_STATIC_ASSERT(sizeof(struct dshm_p_flush) == 56, "dshm_p_flush");
DSHM_STATIC_ASSERT(sizeof(struct dshm_p_release_ack) == 48, "dshm_p_release_ack");
DSHM_STATIC_ASSERT(sizeof(struct dshm_pagelist) == 40, "dshm_pagelist");
DSHM_STATIC_ASSERT(sizeof(struct dshm_handoff) == 24, "dshm_handoff");
DSHM_STATIC_ASSERT(sizeof(struct dshm_adopted) == 72, "dshm_adopted");
DSHM_STATIC_ASSERT(sizeof(struct dshm_p_adopt) == 136, "dshm_p_adopt");
DSHM_STATIC_ASSERT(sizeof(struct dshm_p_adopted) == 104, "dshm_p_adopted");
DSHM_STATIC_ASSERT(sizeof(struct dshm_seg_note) == 40, "dshm_seg_note");
DSHM_STATIC_ASSERT(sizeof(struct dshm_stats) == 40, "dshm_stats");
DSHM_STATIC_ASSERT(sizeof(struct dshm_vm_activity) == 136, "dshm_vm_activity");
DSHM_STATIC_ASSERT(sizeof(struct dshm_lock_entry) == 16, "dshm_lock_entry");
DSHM_STATIC_ASSERT(sizeof(struct dshm_copysets) == 40, "dshm_copysets");
DSHM_STATIC_ASSERT(DSHM_REG_LOCK(DSHM_MAX_LOCKS - 1) + 4 <= DSHM_BAR0_SIZE,
                   "BAR0 holds every lock");
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "dshm's wire format is little-endian; big-endian hosts are not supported"
#endif

#ifdef __cplusplus
}
#endif

#endif /* DSHM_WIRE_H */
