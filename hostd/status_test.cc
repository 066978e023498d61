// Unit tests for status.h: codes, messages, ToString, GError conversion.
#include "status.h"

#include <string>

// check.h defines a fail() macro: it must follow the C++ headers.
#include "../tests/unit/check_main.h"

using dshm::Status;

START_TEST(ok_is_default_and_cheap) {
    Status s;
    ck_assert(s.ok());
    ck_assert_int_eq(s.code(), DSHM_OK);
    ck_assert(s.message().empty());
    ck_assert(s.ToString() == "OK");
    ck_assert(Status::OK().ok());
}
END_TEST

START_TEST(factories_set_code_and_message) {
    struct {
        Status s;
        dshm_status code;
        const char *name;
    } cases[] = {
        {Status::Proto("m"), DSHM_E_PROTO, "E_PROTO"},
        {Status::Version("m"), DSHM_E_VERSION, "E_VERSION"},
        {Status::NoSegment("m"), DSHM_E_NO_SEGMENT, "E_NO_SEGMENT"},
        {Status::BadLock("m"), DSHM_E_BAD_LOCK, "E_BAD_LOCK"},
        {Status::NotHeld("m"), DSHM_E_NOT_HELD, "E_NOT_HELD"},
        {Status::Pending("m"), DSHM_E_PENDING, "E_PENDING"},
        {Status::AlreadyHeld("m"), DSHM_E_ALREADY_HELD, "E_ALREADY_HELD"},
        {Status::OwnerLost("m"), DSHM_E_OWNER_LOST, "E_OWNER_LOST"},
        {Status::NotAttached("m"), DSHM_E_NOT_ATTACHED, "E_NOT_ATTACHED"},
        {Status::Uffd("m"), DSHM_E_UFFD, "E_UFFD"},
        {Status::Internal("m"), DSHM_E_INTERNAL, "E_INTERNAL"},
        {Status::NotOwner("m"), DSHM_E_NOT_OWNER, "E_NOT_OWNER"},
        {Status::Busy("m"), DSHM_E_BUSY, "E_BUSY"},
        {Status::NoQuorum("m"), DSHM_E_NO_QUORUM, "E_NO_QUORUM"},
        {Status::Auth("m"), DSHM_E_AUTH, "E_AUTH"},
    };
    for (const auto &c : cases) {
        ck_assert(!c.s.ok());
        ck_assert_int_eq(c.s.code(), c.code);
        ck_assert_str_eq(c.s.message().c_str(), "m");
        ck_assert(c.s.ToString() == std::string(c.name) + ": m");
        ck_assert_str_eq(dshm::StatusCodeName(c.code), c.name);
    }
    ck_assert(Status::Proto("").ToString() == "E_PROTO");
    ck_assert_str_eq(dshm::StatusCodeName(999), "E_UNKNOWN");
}
END_TEST

START_TEST(from_code) {
    ck_assert(Status::FromCode(DSHM_OK, "ignored").ok());
    Status s = Status::FromCode(DSHM_E_PENDING, "queued");
    ck_assert_int_eq(s.code(), DSHM_E_PENDING);
    ck_assert_str_eq(s.message().c_str(), "queued");
    Status u = Status::FromCode(77, "x");
    ck_assert_int_eq(u.code(), DSHM_E_INTERNAL);
    ck_assert(u.message().find("77") != std::string::npos);
}
END_TEST

START_TEST(gerror_roundtrip) {
    ck_assert(Status().ToGError() == nullptr);
    ck_assert(Status::FromGError(nullptr).ok());
    ck_assert_str_eq(g_quark_to_string(DSHM_ERROR), "dshm-error-quark");

    GError *e = Status::NotHeld("lock 3").ToGError();
    ck_assert(e != nullptr);
    ck_assert(g_error_matches(e, DSHM_ERROR, DSHM_E_NOT_HELD));
    ck_assert_str_eq(e->message, "lock 3");
    Status back = Status::FromGError(e);
    ck_assert_int_eq(back.code(), DSHM_E_NOT_HELD);
    ck_assert_str_eq(back.message().c_str(), "lock 3");
    g_error_free(e);

    // A message with printf directives is not interpreted.
    GError *p = Status::Proto("100% %s").ToGError();
    ck_assert_str_eq(p->message, "100% %s");
    g_error_free(p);
}
END_TEST

START_TEST(gerror_foreign_and_invalid) {
    GError *e = g_error_new_literal(G_FILE_ERROR, G_FILE_ERROR_NOENT, "no such file");
    Status s = Status::FromGError(e);
    ck_assert_int_eq(s.code(), DSHM_E_INTERNAL);
    ck_assert_str_eq(s.message().c_str(), "g-file-error-quark: no such file");
    g_error_free(e);

    GError *zero = g_error_new_literal(DSHM_ERROR, 0, "zero");
    ck_assert_int_eq(Status::FromGError(zero).code(), DSHM_E_INTERNAL);
    g_error_free(zero);
    GError *big = g_error_new_literal(DSHM_ERROR, 4242, "big");
    ck_assert_int_eq(Status::FromGError(big).code(), DSHM_E_INTERNAL);
    g_error_free(big);
}
END_TEST

int main() {
    Suite *s = suite_create("hostd/status");
    TCase *tc = NewTCase("status", 10);
    tcase_add_test(tc, ok_is_default_and_cheap);
    tcase_add_test(tc, factories_set_code_and_message);
    tcase_add_test(tc, from_code);
    tcase_add_test(tc, gerror_roundtrip);
    tcase_add_test(tc, gerror_foreign_and_invalid);
    suite_add_tcase(s, tc);
    return RunSuite(s);
}
