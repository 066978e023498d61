// dshmd: the dshm host daemon.  A thin main over Daemon (daemon.h).
#include <glib.h>
#include <malloc.h>

#include <cstdio>

#include "config.h"
#include "daemon.h"
#include "watch.h"

int main(int argc, char **argv) {
    gchar *config_path = nullptr;
    gboolean check_only = FALSE;
    gint poll_us = -1;
    GOptionEntry entries[] = {
        {"config", 'c', 0, G_OPTION_ARG_FILENAME, &config_path,
         "configuration file (default /etc/dshm/dshmd.conf)", "FILE"},
        {"check-config", 0, 0, G_OPTION_ARG_NONE, &check_only,
         "parse the configuration, print it and exit", nullptr},
        {"poll-us", 0, 0, G_OPTION_ARG_INT, &poll_us,
         "busy-poll window in microseconds (overrides poll-us of the config; 0 = never spin)",
         "US"},
        {nullptr, 0, 0, G_OPTION_ARG_NONE, nullptr, nullptr, nullptr},
    };
    GOptionContext *ctx = g_option_context_new("- dshm host daemon");
    g_option_context_set_summary(
        ctx,
        "Serves the distributed shared memory segments of this host: page faults of\n"
        "local clients (VMs), write-backs, invalidations and locks (docs/protocol.md).");
    g_option_context_add_main_entries(ctx, entries, nullptr);
    GError *err = nullptr;
    if (!g_option_context_parse(ctx, &argc, &argv, &err)) {
        fprintf(stderr, "dshmd: %s (try --help)\n", err->message);
        return 2;
    }
    g_option_context_free(ctx);

    dshm::Config cfg;
    std::string path = config_path ? config_path : "/etc/dshm/dshmd.conf";
    g_free(config_path);
    dshm::Status st = dshm::LoadConfig(path, &cfg);
    if (!st.ok()) {
        fprintf(stderr, "dshmd: %s\n", st.message().c_str());
        return 2;
    }
    if (poll_us >= 0)
        cfg.poll_us = static_cast<uint32_t>(poll_us);
    if (check_only) {
        printf("host %u (%s) listen %s socket %s poll-us %u io-thread %s\n", cfg.host_id,
               cfg.host_name.c_str(), cfg.listen.c_str(), cfg.socket_path.c_str(), cfg.poll_us,
               cfg.UsesIoThread() ? "on" : "off");
        for (const auto &p : cfg.peers)
            printf("peer %s host %u at %s\n", p.name.c_str(), p.host_id, p.address.c_str());
        for (const auto &s : cfg.segments) {
            printf("segment %s size %llu owner %u\n", s.name.c_str(), (unsigned long long)s.size,
                   s.owner);
        }
        return 0;
    }
    // A release moves megabytes through short-lived buffers (WRITEBACK
    // frames, send chunks): with glibc's defaults every release grew the
    // heap by that much and gave it back at the end (trim), so the next
    // release paid a page fault per 4 KiB again (~250 per 4 MiB release on
    // the owner).  Keep up to 64 MiB of free heap (the output queue bound)
    // and serve blocks below 4 MiB from the heap.
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
    mallopt(M_MMAP_THRESHOLD, 4 << 20);
    // This thread iterates the loop: it holds the loop mutex (watch.h).
    dshm::loop_mutex.AssertHeld();
    dshm::Daemon daemon(std::move(cfg));
    st = daemon.Start();
    if (!st.ok()) {
        g_critical("cannot start: %s", st.ToString().c_str());
        return 1;
    }
    daemon.Run();
    return 0;
}
