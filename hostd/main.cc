// dshmd: the dshm host daemon.  A thin main over Daemon (daemon.h).
// Exit statuses: exit_codes.h.
#include <glib.h>
#include <malloc.h>

#include <cstdio>

#include "auth.h"
#include "config.h"
#include "daemon.h"
#include "exit_codes.h"
#include "notify.h"
#include "watch.h"

int main(int argc, char **argv) {
    gchar *config_path = nullptr;
    gboolean check_only = FALSE, version = FALSE;
    gint poll_us = -1;
    GOptionEntry entries[] = {
        {"config", 'c', 0, G_OPTION_ARG_FILENAME, &config_path,
         "configuration file (default /etc/dshm/dshmd.conf)", "FILE"},
        {"check-config", 0, 0, G_OPTION_ARG_NONE, &check_only,
         "check the configuration and print all of it, defaults included; exit 0 if it is "
         "valid, 2 if not",
         nullptr},
        {"poll-us", 0, 0, G_OPTION_ARG_INT, &poll_us,
         "busy-poll window in microseconds (overrides poll-us of the config; 0 = never spin)",
         "US"},
        {"version", 0, 0, G_OPTION_ARG_NONE, &version, "print the version and exit", nullptr},
        {nullptr, 0, 0, G_OPTION_ARG_NONE, nullptr, nullptr, nullptr},
    };
    GOptionContext *ctx = g_option_context_new("- dshm host daemon");
    g_option_context_set_summary(
        ctx,
        "Serves the distributed shared memory segments of this host: page faults of\n"
        "local clients (VMs), write-backs, invalidations and locks (docs/protocol.md).\n"
        "SIGTERM or SIGINT: shut down (exit 0). SIGHUP: read the configuration again\n"
        "(the policy thresholds apply at once; other changes are logged as needing a\n"
        "restart).");
    g_option_context_set_description(ctx,
                                     "Exit status: 0 ok, 1 could not start, 2 usage or invalid "
                                     "configuration, 3 configuration file unreadable or "
                                     "corosync unreachable (membership = corosync).\n");
    g_option_context_add_main_entries(ctx, entries, nullptr);
    GError *err = nullptr;
    if (!g_option_context_parse(ctx, &argc, &argv, &err)) {
        fprintf(stderr, "dshmd: %s (try --help)\n", err->message);
        return dshm::kExitUsage;
    }
    g_option_context_free(ctx);
    if (version) {
        printf("dshmd %s\n", DSHM_VERSION);
        return dshm::kExitOk;
    }
    if (argc > 1) {
        fprintf(stderr, "dshmd: unexpected argument '%s' (try --help)\n", argv[1]);
        return dshm::kExitUsage;
    }

    dshm::Config cfg;
    std::string path = config_path ? config_path : "/etc/dshm/dshmd.conf";
    g_free(config_path);
    dshm::Status st = dshm::LoadConfig(path, &cfg);
    if (!st.ok()) {
        fprintf(stderr, "dshmd: %s\n", st.message().c_str());
        return st.code() == DSHM_E_PROTO ? dshm::kExitUsage : dshm::kExitUnavailable;
    }
    if (poll_us >= 0) {
        cfg.poll_us = static_cast<uint32_t>(poll_us);
        cfg.given.insert("dshmd/poll-us");
    }
    if (check_only) {
        // The peers' key too (not part of the file's validity): dshmd
        // would not start without it.
        std::vector<uint8_t> key;
        if (cfg.auth && !cfg.peers.empty() &&
            !(st = dshm::LoadAuthKey(cfg.auth_key_file, &key)).ok()) {
            fprintf(stderr, "dshmd: warning: dshmd will not start: %s\n", st.message().c_str());
        }
        printf("# %s: valid%s\n%s", path.c_str(),
               cfg.auth ? "" : " (auth = off: peers are not authenticated)",
               dshm::FormatConfig(cfg).c_str());
        return dshm::kExitOk;
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
    daemon.SetConfigPath(path);
    st = daemon.Start();
    if (!st.ok()) {
        g_critical("cannot start: %s", st.ToString().c_str());
        dshm::NotifyStatus("cannot start: " + st.message());
        // E_OWNER_LOST: membership = corosync and corosync is not there.
        return st.code() == DSHM_E_OWNER_LOST ? dshm::kExitUnavailable : dshm::kExitFailed;
    }
    dshm::NotifyReady("serving " + std::to_string(daemon.cfg().segments.size()) +
                      " segment(s); clients on " + daemon.cfg().socket_path + ", peers on " +
                      daemon.cfg().listen);
    daemon.Run();
    return dshm::kExitOk;
}
