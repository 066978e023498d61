#include "ivshmem_dev.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace dshm::guest {
namespace {

bool ReadHex(const std::string &path, uint64_t *out) {
    std::ifstream f(path);
    std::string s;
    if (!(f >> s))
        return false;
    errno = 0;
    char *end = nullptr;
    unsigned long long v = strtoull(s.c_str(), &end, 16);
    if (errno || end == s.c_str())
        return false;
    *out = v;
    return true;
}

// sysfs "resource": one line per BAR, "start end flags" in hex.
std::vector<uint64_t> BarSizes(const std::string &dir) {
    std::vector<uint64_t> sizes;
    std::ifstream f(dir + "/resource");
    std::string line;
    while (std::getline(f, line)) {
        std::istringstream ls(line);
        std::string a, b;
        ls >> a >> b;
        uint64_t start = strtoull(a.c_str(), nullptr, 16);
        uint64_t end = strtoull(b.c_str(), nullptr, 16);
        sizes.push_back(end > start ? end - start + 1 : 0);
    }
    return sizes;
}

}  // namespace

std::vector<IvshmemDevice> FindDevices(const std::string &root) {
    std::vector<IvshmemDevice> out;
    DIR *d = opendir(root.c_str());
    if (!d)
        return out;
    while (struct dirent *e = readdir(d)) {
        if (e->d_name[0] == '.')
            continue;
        std::string dir = root + "/" + e->d_name;
        uint64_t vendor = 0, device = 0;
        if (!ReadHex(dir + "/vendor", &vendor) || !ReadHex(dir + "/device", &device))
            continue;
        if (vendor != kIvshmemVendor || device != kIvshmemDevice)
            continue;
        IvshmemDevice dev;
        dev.bdf = e->d_name;
        dev.sysfs_dir = dir;
        auto sizes = BarSizes(dir);
        if (sizes.size() > 0)
            dev.bar0_size = sizes[0];
        if (sizes.size() > 1)
            dev.msix = sizes[1] != 0;
        if (sizes.size() > 2)
            dev.bar2_size = sizes[2];
        out.push_back(std::move(dev));
    }
    closedir(d);
    std::sort(out.begin(), out.end(),
              [](const IvshmemDevice &a, const IvshmemDevice &b) { return a.bdf < b.bdf; });
    return out;
}

const IvshmemDevice *SelectDevice(const std::vector<IvshmemDevice> &devices,
                                  const std::string &selector, std::string *error) {
    if (devices.empty()) {
        *error = "no ivshmem device (PCI 1af4:1110) in this guest";
        return nullptr;
    }
    if (selector.empty())
        return &devices[0];
    if (selector.find_first_not_of("0123456789") == std::string::npos) {
        size_t i = std::stoul(selector);
        if (i < devices.size())
            return &devices[i];
        *error = "device index " + selector + " out of range (" + std::to_string(devices.size()) +
                 " ivshmem device(s))";
        return nullptr;
    }
    for (const auto &d : devices) {
        if (d.bdf == selector || d.bdf == "0000:" + selector)
            return &d;
    }
    *error = "no ivshmem device at " + selector;
    return nullptr;
}

Mapping::Mapping(Mapping &&o) noexcept : data_(o.data_), size_(o.size_) {
    o.data_ = nullptr;
    o.size_ = 0;
}

Mapping &Mapping::operator=(Mapping &&o) noexcept {
    if (this != &o) {
        this->~Mapping();
        data_ = o.data_;
        size_ = o.size_;
        o.data_ = nullptr;
        o.size_ = 0;
    }
    return *this;
}

Mapping::~Mapping() {
    if (data_)
        munmap(const_cast<uint8_t *>(data_), size_);
    data_ = nullptr;
}

bool Mapping::Open(const IvshmemDevice &dev, int bar, std::string *error) {
    std::string path = dev.sysfs_dir + "/resource" + std::to_string(bar);
    int fd = open(path.c_str(), O_RDWR | O_SYNC | O_CLOEXEC);
    if (fd < 0) {
        *error =
            "open " + path + ": " + strerror(errno) + (errno == EACCES ? " (run as root)" : "");
        return false;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || st.st_size <= 0) {
        *error = path + ": cannot tell the BAR size";
        close(fd);
        return false;
    }
    void *p = mmap(nullptr, st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    int saved = errno;
    close(fd);
    if (p == MAP_FAILED) {
        *error = "mmap " + path + ": " + strerror(saved);
        return false;
    }
    this->~Mapping();
    data_ = static_cast<volatile uint8_t *>(p);
    size_ = st.st_size;
    return true;
}

}  // namespace dshm::guest
