// Finding and mapping ivshmem PCI devices from inside a Linux guest.
//
// Devices are found through sysfs (no guest driver is needed): every PCI
// function with vendor 0x1af4 and device 0x1110 is an ivshmem device; BAR0
// holds its registers and BAR2 its shared memory, both mapped through the
// sysfs files resource0 and resource2 (root only).
//
// Thread safety: FindDevices() is reentrant.  A Mapping is owned by one
// thread at a time; the memory it maps is shared with other guests and with
// the host, so accesses to it must be made through volatile pointers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace dshm::guest {

inline constexpr uint16_t kIvshmemVendor = 0x1af4;
inline constexpr uint16_t kIvshmemDevice = 0x1110;

struct IvshmemDevice {
    std::string bdf;        // "0000:00:04.0"
    std::string sysfs_dir;  // ".../0000:00:04.0"
    uint64_t bar0_size = 0;
    uint64_t bar2_size = 0;
    bool msix = false;  // BAR1 present: the doorbell (interrupt) flavour
};

// Lists the ivshmem devices below `sysfs_pci_devices` (normally
// /sys/bus/pci/devices), sorted by BDF.  Unreadable entries are skipped.
std::vector<IvshmemDevice> FindDevices(
    const std::string &sysfs_pci_devices = "/sys/bus/pci/devices");

// Picks a device by selector: empty (the first one), a list index ("0", "1"),
// or a full or short BDF ("0000:00:04.0", "00:04.0").  Returns nullptr and
// sets *error when nothing matches.
const IvshmemDevice *SelectDevice(const std::vector<IvshmemDevice> &devices,
                                  const std::string &selector, std::string *error);

// A shared mapping of one BAR through sysfs.  Move-only; unmaps on destruction.
class Mapping {
  public:
    Mapping() = default;
    Mapping(Mapping &&other) noexcept;
    Mapping &operator=(Mapping &&other) noexcept;
    Mapping(const Mapping &) = delete;
    Mapping &operator=(const Mapping &) = delete;
    ~Mapping();

    // Maps resource<bar> of `dev`.  Returns false and sets *error on failure.
    bool Open(const IvshmemDevice &dev, int bar, std::string *error);

    volatile uint8_t *data() const { return data_; }
    uint64_t size() const { return size_; }

  private:
    volatile uint8_t *data_ = nullptr;
    uint64_t size_ = 0;
};

}  // namespace dshm::guest
