#include "notify.h"

#include <glib.h>
#include <systemd/sd-daemon.h>

#include <cstring>
#include <ctime>

namespace dshm {
namespace {

// STATUS= is one line: newlines would start another assignment.
std::string OneLine(std::string s) {
    for (char &c : s) {
        if (c == '\n')
            c = ' ';
    }
    return s;
}

void Send(const std::string &state) {
    int rc = sd_notify(0, state.c_str());
    if (rc < 0)
        g_debug("sd_notify: %s", strerror(-rc));
}

}  // namespace

void NotifyReady(const std::string &status) {
    Send("READY=1\nSTATUS=" + OneLine(status));
}

void NotifyReloading(const std::string &status) {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    unsigned long long us = ts.tv_sec * 1000000ull + ts.tv_nsec / 1000;
    Send("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(us) + "\nSTATUS=" + OneLine(status));
}

void NotifyStatus(const std::string &status) {
    Send("STATUS=" + OneLine(status));
}

void NotifyStopping(const std::string &status) {
    Send("STOPPING=1\nSTATUS=" + OneLine(status));
}

}  // namespace dshm
