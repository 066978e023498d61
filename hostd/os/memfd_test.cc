// Unit tests for memfd.h: creation and seals, holes, pread, punch.
#include "memfd.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

// check.h defines a fail() macro: it must follow the C++ headers.
#include "../../tests/unit/check_main.h"

using namespace dshm::os;

namespace {

std::vector<unsigned char> Page(unsigned char v) {
    return std::vector<unsigned char>(kPageSize, v);
}

}  // namespace

START_TEST(create_sized_sealed_all_holes) {
    auto fd = CreateSegmentMemfd("unit", 8 * kPageSize);
    ck_assert_msg(fd.ok(), "%s", fd.ok() ? "" : fd.error().what.c_str());
    struct stat st;
    ck_assert_int_eq(fstat(fd->get(), &st), 0);
    ck_assert_int_eq(st.st_size, 8 * kPageSize);
    ck_assert_int_ne(fcntl(fd->get(), F_GETFD) & FD_CLOEXEC, 0);
    int seals = fcntl(fd->get(), F_GET_SEALS);
    ck_assert_int_eq(seals & (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL),
                     F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
    ck_assert_int_eq(seals & F_SEAL_WRITE, 0);
    // Nobody can resize it, nor remove the seals.
    ck_assert_int_eq(ftruncate(fd->get(), 16 * kPageSize), -1);
    ck_assert_int_eq(errno, EPERM);
    ck_assert_int_eq(ftruncate(fd->get(), kPageSize), -1);
    ck_assert_int_eq(errno, EPERM);
    ck_assert_int_eq(fcntl(fd->get(), F_ADD_SEALS, F_SEAL_WRITE), -1);
    for (uint64_t off = 0; off < 8 * kPageSize; off += kPageSize) {
        auto present = PageIsPresent(fd->get(), off);
        ck_assert(present.ok());
        ck_assert(!*present);
    }
}
END_TEST

START_TEST(create_rejects_bad_sizes) {
    ck_assert_int_eq(CreateSegmentMemfd("x", 0).err(), EINVAL);
    ck_assert_int_eq(CreateSegmentMemfd("x", 100).err(), EINVAL);
    auto r = CreateSegmentMemfd("x", kPageSize + 1);
    ck_assert_int_eq(r.err(), EINVAL);
    ck_assert(r.error().what.find("Invalid argument") != std::string::npos);
}
END_TEST

START_TEST(read_hole_is_zero_and_stays_hole) {
    auto fd = CreateSegmentMemfd("unit", 4 * kPageSize);
    ck_assert(fd.ok());
    auto buf = Page(0xaa);
    ck_assert(ReadPage(fd->get(), 2 * kPageSize, buf.data()).ok());
    ck_assert(buf == Page(0));
    ck_assert(!*PageIsPresent(fd->get(), 2 * kPageSize));
}
END_TEST

START_TEST(write_read_punch) {
    auto fd = CreateSegmentMemfd("unit", 4 * kPageSize);
    ck_assert(fd.ok());
    auto p = Page(0x5c);
    ck_assert(WritePage(fd->get(), kPageSize, p.data()).ok());
    ck_assert(*PageIsPresent(fd->get(), kPageSize));
    ck_assert(!*PageIsPresent(fd->get(), 0));
    ck_assert(!*PageIsPresent(fd->get(), 2 * kPageSize));
    auto buf = Page(0);
    ck_assert(ReadPage(fd->get(), kPageSize, buf.data()).ok());
    ck_assert(buf == p);

    ck_assert(PunchPage(fd->get(), kPageSize).ok());
    ck_assert(!*PageIsPresent(fd->get(), kPageSize));
    ck_assert(ReadPage(fd->get(), kPageSize, buf.data()).ok());
    ck_assert(buf == Page(0));
    // Size unchanged (KEEP_SIZE).
    struct stat st;
    ck_assert_int_eq(fstat(fd->get(), &st), 0);
    ck_assert_int_eq(st.st_size, 4 * kPageSize);
}
END_TEST

START_TEST(present_pages_walks_runs) {
    auto fd = CreateSegmentMemfd("unit", 16 * kPageSize);
    ck_assert(fd.ok());
    auto none = PresentPages(fd->get(), 16);
    ck_assert(none.ok() && none->size() == 16);
    for (bool b : *none)
        ck_assert(!b);
    // Runs at the start, in the middle and at the end, and a lone page.
    for (uint64_t pg : {0, 1, 5, 6, 7, 9, 15})
        ck_assert(WritePage(fd->get(), pg * kPageSize, Page(0x11).data()).ok());
    ck_assert(PunchPage(fd->get(), 6 * kPageSize).ok());
    auto got = PresentPages(fd->get(), 16);
    ck_assert(got.ok());
    for (uint64_t pg = 0; pg < 16; pg++)
        ck_assert_msg((*got)[pg] == *PageIsPresent(fd->get(), pg * kPageSize), "page %u",
                      unsigned(pg));
    ck_assert((*got)[15] && (*got)[5] && !(*got)[6] && (*got)[7] && !(*got)[8]);
    // Fewer pages than the file: only those are looked at.
    auto head = PresentPages(fd->get(), 6);
    ck_assert(head.ok() && head->size() == 6 && (*head)[5] && !(*head)[4]);
}
END_TEST

START_TEST(client_mapping_shares_pages) {
    auto fd = CreateSegmentMemfd("unit", 4 * kPageSize);
    ck_assert(fd.ok());
    void *m = mmap(nullptr, 4 * kPageSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd->get(), 0);
    ck_assert(m != MAP_FAILED);
    static_cast<unsigned char *>(m)[3 * kPageSize + 7] = 0x42;
    ck_assert(*PageIsPresent(fd->get(), 3 * kPageSize));
    auto buf = Page(0);
    ck_assert(ReadPage(fd->get(), 3 * kPageSize, buf.data()).ok());
    ck_assert_uint_eq(buf[7], 0x42);
    ck_assert(PunchPage(fd->get(), 3 * kPageSize).ok());
    ck_assert_uint_eq(static_cast<unsigned char *>(m)[3 * kPageSize + 7], 0);
    munmap(m, 4 * kPageSize);
}
END_TEST

START_TEST(bad_arguments) {
    auto fd = CreateSegmentMemfd("unit", 4 * kPageSize);
    ck_assert(fd.ok());
    ck_assert_int_eq(PunchPage(fd->get(), 100).err(), EINVAL);
    ck_assert_int_eq(PunchPage(fd->get(), 0, 0).err(), EINVAL);
    ck_assert_int_eq(PageIsPresent(fd->get(), 1).err(), EINVAL);
    // Past the end: a hole for SEEK_DATA, EIO for a full-page read.
    auto past = PageIsPresent(fd->get(), 8 * kPageSize);
    ck_assert(past.ok() && !*past);
    auto buf = Page(0);
    ck_assert_int_eq(ReadPage(fd->get(), 4 * kPageSize, buf.data()).err(), EIO);
    // Sealed against growth.
    ck_assert_int_eq(WritePage(fd->get(), 4 * kPageSize, buf.data()).err(), EPERM);
    ck_assert_int_eq(ReadPage(-1, 0, buf.data()).err(), EBADF);
}
END_TEST

START_TEST(unique_fd_moves_and_closes) {
    int raw;
    {
        auto fd = CreateSegmentMemfd("unit", kPageSize);
        ck_assert(fd.ok());
        UniqueFd a = std::move(*fd);
        ck_assert(!fd->valid());
        raw = a.get();
        UniqueFd b;
        b = std::move(a);
        ck_assert_int_eq(b.get(), raw);
        ck_assert_int_ge(fcntl(raw, F_GETFD), 0);
    }
    ck_assert_int_eq(fcntl(raw, F_GETFD), -1);
    ck_assert_int_eq(errno, EBADF);
}
END_TEST

int main() {
    Suite *s = suite_create("hostd/os/memfd");
    TCase *tc = NewTCase("memfd", 20);
    tcase_add_test(tc, create_sized_sealed_all_holes);
    tcase_add_test(tc, create_rejects_bad_sizes);
    tcase_add_test(tc, read_hole_is_zero_and_stays_hole);
    tcase_add_test(tc, write_read_punch);
    tcase_add_test(tc, present_pages_walks_runs);
    tcase_add_test(tc, client_mapping_shares_pages);
    tcase_add_test(tc, bad_arguments);
    tcase_add_test(tc, unique_fd_moves_and_closes);
    suite_add_tcase(s, tc);
    return RunSuite(s);
}
