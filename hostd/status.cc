#include "status.h"

// clang-format would split the quark name into "dshm - error - quark".
// clang-format off
G_DEFINE_QUARK(dshm-error-quark, dshm_error)
// clang-format on

namespace dshm {

const char *StatusCodeName(uint32_t code) {
    switch (code) {
        case DSHM_OK:
            return "OK";
        case DSHM_E_PROTO:
            return "E_PROTO";
        case DSHM_E_VERSION:
            return "E_VERSION";
        case DSHM_E_NO_SEGMENT:
            return "E_NO_SEGMENT";
        case DSHM_E_BAD_LOCK:
            return "E_BAD_LOCK";
        case DSHM_E_NOT_HELD:
            return "E_NOT_HELD";
        case DSHM_E_PENDING:
            return "E_PENDING";
        case DSHM_E_ALREADY_HELD:
            return "E_ALREADY_HELD";
        case DSHM_E_OWNER_LOST:
            return "E_OWNER_LOST";
        case DSHM_E_NOT_ATTACHED:
            return "E_NOT_ATTACHED";
        case DSHM_E_UFFD:
            return "E_UFFD";
        case DSHM_E_INTERNAL:
            return "E_INTERNAL";
        case DSHM_E_NOT_OWNER:
            return "E_NOT_OWNER";
        case DSHM_E_BUSY:
            return "E_BUSY";
        case DSHM_E_NO_QUORUM:
            return "E_NO_QUORUM";
        case DSHM_E_AUTH:
            return "E_AUTH";
    }
    return "E_UNKNOWN";
}

bool IsKnownStatusCode(uint32_t code) {
    return code <= DSHM_E_AUTH;
}

Status Status::FromCode(uint32_t code, std::string_view msg) {
    if (code == DSHM_OK) {
        return Status();
    }
    if (!IsKnownStatusCode(code)) {
        return Status(DSHM_E_INTERNAL,
                      "unknown status code " + std::to_string(code) + ": " + std::string(msg));
    }
    return Status(static_cast<dshm_status>(code), msg);
}

std::string Status::ToString() const {
    std::string s = StatusCodeName(code_);
    if (!message_.empty()) {
        s += ": ";
        s += message_;
    }
    return s;
}

GError *Status::ToGError() const {
    if (ok()) {
        return nullptr;
    }
    // g_error_new_literal copies the message; no format-string interpretation.
    return g_error_new_literal(DSHM_ERROR, static_cast<gint>(code_), message_.c_str());
}

Status Status::FromGError(const GError *error) {
    if (error == nullptr) {
        return Status();
    }
    const char *msg = error->message != nullptr ? error->message : "";
    if (error->domain == DSHM_ERROR) {
        if (error->code <= 0 || !IsKnownStatusCode(static_cast<uint32_t>(error->code))) {
            return Status(DSHM_E_INTERNAL, "dshm error with invalid code " +
                                               std::to_string(error->code) + ": " + msg);
        }
        return Status(static_cast<dshm_status>(error->code), msg);
    }
    const char *domain = g_quark_to_string(error->domain);
    return Status(DSHM_E_INTERNAL,
                  std::string(domain != nullptr ? domain : "unknown-domain") + ": " + msg);
}

}  // namespace dshm
