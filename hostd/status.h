// Status: the result of an operation that can fail, in the style of
// leveldb's Status.  Every module of dshmd returns a Status instead of
// throwing; the codes are exactly the `enum dshm_status` values of the wire
// format, so a failed request can be answered on the wire (ERROR,
// LOCK_FAILED, P_RELEASE_ACK) with status.code() without any translation.
//
// Thread safety: a Status is a value.  Distinct objects may be used from
// distinct threads without synchronization; const methods of one object may
// be called concurrently; anything else needs external synchronization.
//
// Invariants:
//   - ok() <=> code() == DSHM_OK; an OK status carries an empty message and
//     costs no allocation (the common path is free).
//   - code() is always one of the values of enum dshm_status.
//
// GLib interop: dshmd's event loop and its GIO-based code report errors as
// GError.  Errors in the DSHM_ERROR domain (dshm_error_quark()) carry a
// dshm_status as their code; ToGError()/FromGError() convert both ways.
#pragma once

#include <glib.h>

#include <string>
#include <string_view>

#include "dshm/wire.h"

// The GError domain of dshm errors; GError.code is an enum dshm_status.
GQuark dshm_error_quark();
#define DSHM_ERROR (dshm_error_quark())

namespace dshm {

// Returns the symbolic name of a status code ("OK", "E_PROTO", ...), or
// "E_UNKNOWN" for a value outside enum dshm_status.
const char *StatusCodeName(uint32_t code);

// Returns true if `code` is one of the values of enum dshm_status.
bool IsKnownStatusCode(uint32_t code);

class [[nodiscard]] Status {
  public:
    // An OK status.
    Status() = default;

    static Status OK() { return Status(); }

    // One factory per error code.  `msg` says what exactly went wrong.
    static Status Proto(std::string_view msg) { return Status(DSHM_E_PROTO, msg); }
    static Status Version(std::string_view msg) { return Status(DSHM_E_VERSION, msg); }
    static Status NoSegment(std::string_view msg) { return Status(DSHM_E_NO_SEGMENT, msg); }
    static Status BadLock(std::string_view msg) { return Status(DSHM_E_BAD_LOCK, msg); }
    static Status NotHeld(std::string_view msg) { return Status(DSHM_E_NOT_HELD, msg); }
    static Status Pending(std::string_view msg) { return Status(DSHM_E_PENDING, msg); }
    static Status AlreadyHeld(std::string_view msg) { return Status(DSHM_E_ALREADY_HELD, msg); }
    static Status OwnerLost(std::string_view msg) { return Status(DSHM_E_OWNER_LOST, msg); }
    static Status NotAttached(std::string_view msg) { return Status(DSHM_E_NOT_ATTACHED, msg); }
    static Status Uffd(std::string_view msg) { return Status(DSHM_E_UFFD, msg); }
    static Status Internal(std::string_view msg) { return Status(DSHM_E_INTERNAL, msg); }
    static Status NotOwner(std::string_view msg) { return Status(DSHM_E_NOT_OWNER, msg); }
    static Status Busy(std::string_view msg) { return Status(DSHM_E_BUSY, msg); }
    static Status NoQuorum(std::string_view msg) { return Status(DSHM_E_NO_QUORUM, msg); }
    static Status Auth(std::string_view msg) { return Status(DSHM_E_AUTH, msg); }

    // A status with an arbitrary code, e.g. one received on the wire.  A code
    // outside enum dshm_status becomes E_INTERNAL (the message says so);
    // DSHM_OK yields an OK status and drops `msg`.
    static Status FromCode(uint32_t code, std::string_view msg);

    bool ok() const { return code_ == DSHM_OK; }
    dshm_status code() const { return code_; }
    // Empty when ok().
    const std::string &message() const { return message_; }

    // "OK", or "E_PROTO: <message>" (just "E_PROTO" when the message is empty).
    std::string ToString() const;

    // Returns nullptr when ok(); otherwise a new GError in the DSHM_ERROR
    // domain with code() as its code and message() as its message.  The
    // caller owns it (g_error_free / g_propagate_error).
    GError *ToGError() const;

    // nullptr -> OK.  A DSHM_ERROR error -> its code (an unknown or zero code
    // becomes E_INTERNAL) and message.  Any other domain -> E_INTERNAL with
    // "<domain>: <message>", so that the origin is not lost.
    static Status FromGError(const GError *error);

  private:
    Status(dshm_status code, std::string_view msg) : code_(code), message_(msg) {}

    dshm_status code_ = DSHM_OK;
    std::string message_;
};

}  // namespace dshm
