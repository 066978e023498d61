// Unit tests for ivshmem_dev.h against a fake sysfs tree in a temp directory.
#include "ivshmem_dev.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <fstream>
#include <string>

// check.h defines a fail() macro: it must follow the C++ headers.
#include "../tests/unit/check_main.h"

using namespace dshm::guest;

static std::string g_root;

static void WriteFile(const std::string &path, const std::string &text) {
    std::ofstream f(path);
    f << text;
}

// Adds one fake PCI function; bars: sizes of BAR0..BAR2 (0 = absent).
static void AddFunction(const std::string &bdf, const char *vendor, const char *device,
                        uint64_t bar0, uint64_t bar1, uint64_t bar2) {
    std::string dir = g_root + "/" + bdf;
    mkdir(dir.c_str(), 0755);
    WriteFile(dir + "/vendor", std::string(vendor) + "\n");
    WriteFile(dir + "/device", std::string(device) + "\n");
    char line[128];
    std::string res;
    uint64_t base = 0xfe000000;
    for (uint64_t size : {bar0, bar1, bar2}) {
        if (size) {
            snprintf(line, sizeof line, "0x%016llx 0x%016llx 0x0000000000040200\n",
                     (unsigned long long)base, (unsigned long long)(base + size - 1));
            base += size;
        } else {
            snprintf(line, sizeof line, "0x%016llx 0x%016llx 0x%016llx\n", 0ull, 0ull, 0ull);
        }
        res += line;
    }
    WriteFile(dir + "/resource", res);
}

static void Setup() {
    char tmpl[] = "/tmp/dshm-sysfs-XXXXXX";
    g_root = mkdtemp(tmpl);
    AddFunction("0000:00:05.0", "0x1af4", "0x1110", 256, 4096, 16 << 20);  // doorbell
    AddFunction("0000:00:04.0", "0x1af4", "0x1110", 256, 0, 1 << 20);      // plain
    AddFunction("0000:00:03.0", "0x1af4", "0x1000", 256, 0, 0);            // virtio-net
    AddFunction("0000:00:02.0", "0x1234", "0x1111", 4096, 0, 0);           // VGA
}

static void Teardown() {
    std::string cmd = "rm -rf '" + g_root + "'";
    ck_assert_int_eq(system(cmd.c_str()), 0);
}

START_TEST(finds_only_ivshmem_sorted) {
    auto devs = FindDevices(g_root);
    ck_assert_uint_eq(devs.size(), 2);
    ck_assert_str_eq(devs[0].bdf.c_str(), "0000:00:04.0");
    ck_assert_uint_eq(devs[0].bar2_size, 1 << 20);
    ck_assert(!devs[0].msix);
    ck_assert_str_eq(devs[1].bdf.c_str(), "0000:00:05.0");
    ck_assert_uint_eq(devs[1].bar0_size, 256);
    ck_assert_uint_eq(devs[1].bar2_size, 16 << 20);
    ck_assert(devs[1].msix);
}
END_TEST

START_TEST(select_by_index_and_bdf) {
    auto devs = FindDevices(g_root);
    std::string err;
    ck_assert_ptr_eq(SelectDevice(devs, "", &err), &devs[0]);
    ck_assert_ptr_eq(SelectDevice(devs, "1", &err), &devs[1]);
    ck_assert_ptr_eq(SelectDevice(devs, "00:05.0", &err), &devs[1]);
    ck_assert_ptr_eq(SelectDevice(devs, "0000:00:04.0", &err), &devs[0]);
    ck_assert_ptr_null(SelectDevice(devs, "7", &err));
    ck_assert(err.find("out of range") != std::string::npos);
    ck_assert_ptr_null(SelectDevice(devs, "00:09.0", &err));
    ck_assert(err.find("no ivshmem device at") != std::string::npos);
    std::vector<IvshmemDevice> none;
    ck_assert_ptr_null(SelectDevice(none, "", &err));
    ck_assert(err.find("1af4:1110") != std::string::npos);
}
END_TEST

START_TEST(missing_root_is_empty) {
    ck_assert_uint_eq(FindDevices(g_root + "/nonexistent").size(), 0);
}
END_TEST

START_TEST(map_reports_missing_resource) {
    auto devs = FindDevices(g_root);
    Mapping m;
    std::string err;
    ck_assert(!m.Open(devs[0], 2, &err));
    ck_assert(err.find("resource2") != std::string::npos);
}
END_TEST

int main() {
    Suite *s = suite_create("guest-tools/ivshmem_dev");
    TCase *tc = NewTCase("sysfs", 20);
    tcase_add_checked_fixture(tc, Setup, Teardown);
    tcase_add_test(tc, finds_only_ivshmem_sorted);
    tcase_add_test(tc, select_by_index_and_bdf);
    tcase_add_test(tc, missing_root_is_empty);
    tcase_add_test(tc, map_reports_missing_resource);
    suite_add_tcase(s, tc);
    return RunSuite(s);
}
