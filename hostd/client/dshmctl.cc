// dshmctl: look at a running dshmd.
//
//   dshmctl [--socket PATH] segments [--json]   owner, size, local copy, clients, counters
//   dshmctl [--socket PATH] peers [--json]      the other hosts and their connections
//   dshmctl [--socket PATH] stats [--json]      both, plus the access monitor (this
//                                               host's VMs) and the owner's classification
//   dshmctl [--socket PATH] advise [--json]     which VM would gain from moving to which
//                                               host, ranked, with the reason
//   dshmctl [--socket PATH] domain-xml --name NAME [--segment SEG]... [options]
//                                               libvirt domain XML for a VM with
//                                               dshm segments (domain_xml.h; no dshmd
//                                               needed; --help lists the options)
//   dshmctl --version | --help
//
// Exit status (exit_codes.h): 0 ok, 2 usage, 3 dshmd unreachable or its
// reply unreadable.
#include <glib.h>
#include <json-glib/json-glib.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "domain_xml.h"
#include "auth.h"
#include "dshm_client.h"
#include "exit_codes.h"

namespace {

constexpr char kCommands[] =
    "Commands:\n"
    "  segments   owner, size, local copy, clients and counters of each segment\n"
    "  peers      the other hosts and their connections\n"
    "  stats      both, plus the access monitor and the owner's classification\n"
    "  advise     which VM would gain from moving to which host, ranked\n"
    "  keygen FILE  writes a new cluster key for peer authentication (32 random\n"
    "             bytes, mode 0600; FILE must not exist): copy it to every host as\n"
    "             auth-key-file (default /etc/dshm/authkey; no dshmd needed)\n"
    "  domain-xml --name NAME [--segment SEG]... [options]\n"
    "             libvirt domain XML for a VM with dshm segments (no dshmd needed;\n"
    "             dshmctl domain-xml --help lists its options)";

int Usage(const std::string &why) {
    fprintf(stderr,
            "dshmctl: %s\n"
            "usage: dshmctl [--socket PATH] segments|peers|stats|advise [--json]\n"
            "       dshmctl keygen FILE\n"
            "       dshmctl [--socket PATH] domain-xml --name NAME [--segment SEG]... "
            "[options]\n"
            "(dshmctl --help for more)\n",
            why.c_str());
    return dshm::kExitUsage;
}

// `dshmctl domain-xml ARGS`: prints the XML; 2 on a usage error.  A --socket
// given before the subcommand is the default of its own --socket.
int DomainXml(int argc, char **argv, const std::string &socket) {
    dshm::DomainXmlOptions o;
    o.socket = socket;
    bool help = false;
    dshm::Status st = dshm::ParseDomainXmlArgs(argc, argv, &o, &help);
    if (help) {
        fputs(dshm::kDomainXmlUsage, stdout);
        return 0;
    }
    std::string xml;
    if (st.ok()) {
        st = dshm::BuildDomainXml(o, &xml);
    }
    if (!st.ok()) {
        fprintf(stderr, "dshmctl domain-xml: %s\n(dshmctl domain-xml --help for the options)\n",
                st.message().c_str());
        return dshm::kExitUsage;
    }
    fputs(xml.c_str(), stdout);
    return dshm::kExitOk;
}

long long Int(JsonObject *o, const char *k) {
    return json_object_has_member(o, k) ? json_object_get_int_member(o, k) : 0;
}

void PrintSegments(JsonObject *root) {
    JsonArray *segs = json_object_get_array_member(root, "segments");
    printf("%-16s %10s %5s %6s %7s %6s %7s\n", "SEGMENT", "SIZE", "OWNER", "VALID", "DIRTY",
           "COPIES", "CLIENTS");
    for (guint i = 0; i < json_array_get_length(segs); i++) {
        JsonObject *s = json_array_get_object_element(segs, i);
        JsonArray *cl = json_object_get_array_member(s, "clients");
        printf("%-16s %9lldK %5lld %6lld %7lld %6lld %7u\n",
               json_object_get_string_member(s, "name"), Int(s, "size") / 1024, Int(s, "owner"),
               Int(s, "valid_pages"), Int(s, "dirty_pages"), Int(s, "remote_copies"),
               json_array_get_length(cl));
        if (json_object_has_member(s, "owner_reason")) {
            printf("  owner: host %lld%s: %s\n", Int(s, "owner"),
                   json_object_get_boolean_member(s, "moving") ? " (moving)" : "",
                   json_object_get_string_member(s, "owner_reason"));
        }
        JsonObject *st = json_object_get_object_member(s, "stats");
        printf(
            "  faults missing=%lld write=%lld (ahead=%lld) | fetches sent=%lld served=%lld "
            "(read ahead=%lld used=%lld unused=%lld) | "
            "written back pages=%lld bytes=%lld applied=%lld (in flight=%lld reverted=%lld) | "
            "invalidations sent=%lld received=%lld updates=%lld | "
            "locks acquired=%lld released=%lld\n",
            Int(st, "missing_faults"), Int(st, "wp_faults"), Int(st, "write_ahead"),
            Int(st, "fetches_sent"), Int(st, "fetches_served"), Int(st, "read_ahead"),
            Int(st, "read_ahead_used"), Int(st, "read_ahead_unused"), Int(st, "pages_written_back"),
            Int(st, "bytes_written_back"), Int(st, "writebacks_applied"),
            Int(st, "writebacks_inflight"), Int(st, "writebacks_reverted"),
            Int(st, "invalidations_sent"), Int(st, "invalidations_received"), Int(st, "updates"),
            Int(st, "acquires"), Int(st, "releases"));
        for (guint j = 0; j < json_array_get_length(cl); j++) {
            JsonObject *c = json_array_get_object_element(cl, j);
            printf(
                "  client %lld %-20s locks=%lld faults missing=%lld write=%lld written back "
                "pages=%lld bytes=%lld\n",
                Int(c, "id"), json_object_get_string_member(c, "name"), Int(c, "locks_held"),
                Int(c, "missing_faults"), Int(c, "wp_faults"), Int(c, "pages_written_back"),
                Int(c, "bytes_written_back"));
        }
    }
}

// The access monitor (this host's VMs) and the owner's classification.
void PrintMonitor(JsonObject *root) {
    JsonArray *segs = json_object_get_array_member(root, "segments");
    for (guint i = 0; i < json_array_get_length(segs); i++) {
        JsonObject *s = json_array_get_object_element(segs, i);
        if (!json_object_has_member(s, "monitor"))
            continue;
        JsonObject *m = json_object_get_object_member(s, "monitor");
        JsonArray *vms = json_object_get_array_member(m, "vms");
        printf("segment %s: this host's VMs, last %llds (total since attach)\n",
               json_object_get_string_member(s, "name"), Int(m, "window_s"));
        printf("  %-20s %-4s %9s %9s %9s %11s %9s %9s\n", "VM", "ATT", "RFAULTS", "WFAULTS",
               "WB_PAGES", "WB_BYTES", "ACQUIRES", "HOLD_MS");
        for (guint j = 0; j < json_array_get_length(vms); j++) {
            JsonObject *v = json_array_get_object_element(vms, j);
            JsonObject *w = json_object_get_object_member(v, "window");
            JsonObject *t = json_object_get_object_member(v, "total");
            printf("  %-20s %-4s %9lld %9lld %9lld %11lld %9lld %9lld\n",
                   json_object_get_string_member(v, "name"),
                   json_object_get_boolean_member(v, "attached") ? "yes" : "no",
                   Int(w, "read_faults"), Int(w, "write_faults"), Int(w, "pages_written_back"),
                   Int(w, "bytes_written_back"), Int(w, "acquires"), Int(w, "hold_ms"));
            printf("  %-20s %-4s %9lld %9lld %9lld %11lld %9lld %9lld\n", "  (total)", "",
                   Int(t, "read_faults"), Int(t, "write_faults"), Int(t, "pages_written_back"),
                   Int(t, "bytes_written_back"), Int(t, "acquires"), Int(t, "hold_ms"));
        }
        JsonArray *cl = json_object_get_array_member(s, "cluster");
        printf("segment %s: every host's VMs as the owner classifies them\n",
               json_object_get_string_member(s, "name"));
        for (guint j = 0; j < json_array_get_length(cl); j++) {
            JsonObject *v = json_array_get_object_element(cl, j);
            printf("  %-20s host %-3lld %-6s %s\n", json_object_get_string_member(v, "name"),
                   Int(v, "host"), json_object_get_string_member(v, "link"),
                   json_object_get_string_member(v, "reason"));
        }
    }
}

// dshmctl advise: which VM would gain from moving to which host.
void PrintAdvice(JsonObject *root) {
    JsonArray *segs = json_object_get_array_member(root, "segments");
    printf("%-4s %-12s %-20s %-15s %5s %4s %7s  %s\n", "RANK", "SEGMENT", "VM", "ADVICE", "FROM",
           "TO", "GAIN", "REASON");
    int rank = 0;
    for (guint i = 0; i < json_array_get_length(segs); i++) {
        JsonObject *s = json_array_get_object_element(segs, i);
        JsonArray *adv = json_object_get_array_member(s, "advice");
        for (guint j = 0; adv && j < json_array_get_length(adv); j++) {
            JsonObject *a = json_array_get_object_element(adv, j);
            printf("%-4d %-12s %-20s %-15s %5lld %4lld %7lld  %s\n", ++rank,
                   json_object_get_string_member(s, "name"),
                   json_object_get_string_member(a, "name"),
                   json_object_get_string_member(a, "kind"), Int(a, "from_host"), Int(a, "to_host"),
                   Int(a, "score"), json_object_get_string_member(a, "reason"));
        }
    }
    if (!rank)
        printf("(no VM would gain from a migration now)\n");
}

void PrintPeers(JsonObject *root) {
    JsonArray *peers = json_object_get_array_member(root, "peers");
    printf("%-8s %-12s %-22s %-10s %12s %12s\n", "HOST", "NAME", "ADDRESS", "STATE", "BYTES_IN",
           "BYTES_OUT");
    for (guint i = 0; i < json_array_get_length(peers); i++) {
        JsonObject *p = json_array_get_object_element(peers, i);
        printf("%-8lld %-12s %-22s %-10s %12lld %12lld\n", Int(p, "host_id"),
               json_object_get_string_member(p, "name"),
               json_object_get_string_member(p, "address"),
               json_object_get_boolean_member(p, "connected") ? "connected" : "down",
               Int(p, "bytes_in"), Int(p, "bytes_out"));
    }
}

}  // namespace

int main(int argc, char **argv) {
    // domain-xml parses its own options (domain_xml.h): GOption sees only
    // what comes before it.
    int sub = argc;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--socket")) {
            i++;
        } else if (argv[i][0] != '-') {
            if (!strcmp(argv[i], "domain-xml"))
                sub = i;
            break;
        }
    }
    gchar *socket_opt = nullptr;
    gboolean json = FALSE, version = FALSE;
    GOptionEntry entries[] = {
        {"socket", 0, 0, G_OPTION_ARG_FILENAME, &socket_opt,
         "dshmd's client socket (default /run/dshm/dshmd.sock)", "PATH"},
        {"json", 0, 0, G_OPTION_ARG_NONE, &json, "print dshmd's JSON reply as it is", nullptr},
        {"version", 0, 0, G_OPTION_ARG_NONE, &version, "print the version and exit", nullptr},
        {nullptr, 0, 0, G_OPTION_ARG_NONE, nullptr, nullptr, nullptr},
    };
    GOptionContext *ctx = g_option_context_new("COMMAND - look at a running dshmd");
    g_option_context_set_summary(ctx, kCommands);
    g_option_context_set_description(
        ctx, "Exit status: 0 ok, 2 usage, 3 dshmd unreachable or its reply unreadable.\n");
    g_option_context_add_main_entries(ctx, entries, nullptr);
    GError *err = nullptr;
    int nargs = sub;
    if (!g_option_context_parse(ctx, &nargs, &argv, &err)) {
        std::string m = err->message;
        g_error_free(err);
        g_option_context_free(ctx);
        return Usage(m);
    }
    g_option_context_free(ctx);
    std::string socket = socket_opt ? socket_opt : "/run/dshm/dshmd.sock";
    g_free(socket_opt);
    if (version) {
        printf("dshmctl %s\n", DSHM_VERSION);
        return dshm::kExitOk;
    }
    // GOption moved the arguments it consumed: argv[1..nargs) are the
    // positional ones before domain-xml; domain-xml's own follow at sub.
    if (sub < argc) {
        if (nargs > 1)
            return Usage(std::string("unexpected '") + argv[1] + "' before domain-xml");
        if (json)
            return Usage("--json is not an option of domain-xml");
        return DomainXml(argc - sub - 1, argv + sub + 1, socket);
    }
    std::string what, file;
    for (int i = 1; i < nargs; i++) {
        if (argv[i][0] == '-' && strcmp(argv[i], "--") != 0)
            return Usage(std::string("unknown option ") + argv[i]);
        if (!strcmp(argv[i], "--"))
            continue;
        if (what == "keygen" && file.empty()) {
            file = argv[i];
            continue;
        }
        if (!what.empty())
            return Usage(std::string("unexpected argument '") + argv[i] + "'");
        what = argv[i];
    }
    if (what == "keygen") {
        if (file.empty())
            return Usage("keygen needs a FILE");
        dshm::Status st = dshm::WriteNewAuthKey(file);
        if (!st.ok()) {
            fprintf(stderr, "dshmctl: keygen: %s\n", st.message().c_str());
            return dshm::kExitUnavailable;
        }
        return dshm::kExitOk;
    }
    if (what.empty())
        return Usage("no command");
    uint32_t q = what == "segments"                    ? DSHM_CTL_SEGMENTS
                 : what == "peers"                     ? DSHM_CTL_PEERS
                 : what == "stats" || what == "advise" ? DSHM_CTL_STATS
                                                       : 0;
    if (!q)
        return Usage("unknown command '" + what + "'");
    std::string text;
    dshm::Status st = dshm::CtlQuery(socket, q, &text);
    if (!st.ok()) {
        fprintf(stderr, "dshmctl: %s\n", st.ToString().c_str());
        return dshm::kExitUnavailable;
    }
    if (json) {
        printf("%s\n", text.c_str());
        return 0;
    }
    JsonParser *parser = json_parser_new();
    err = nullptr;
    if (!json_parser_load_from_data(parser, text.c_str(), text.size(), &err)) {
        fprintf(stderr, "dshmctl: bad reply from dshmd: %s\n", err->message);
        return dshm::kExitUnavailable;
    }
    JsonObject *root = json_node_get_object(json_parser_get_root(parser));
    printf("host %lld (%s)\n", Int(root, "host_id"),
           json_object_get_string_member(root, "host_name"));
    if (json_object_has_member(root, "membership")) {
        JsonObject *m = json_object_get_object_member(root, "membership");
        printf("membership: %s\n", json_object_get_string_member(m, "summary"));
    }
    if (what == "advise") {
        PrintAdvice(root);
        g_object_unref(parser);
        return 0;
    }
    if (json_object_has_member(root, "segments"))
        PrintSegments(root);
    if (what == "stats")
        PrintMonitor(root);
    if (json_object_has_member(root, "peers"))
        PrintPeers(root);
    g_object_unref(parser);
    return 0;
}
