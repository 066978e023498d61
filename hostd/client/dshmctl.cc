// dshmctl: look at a running dshmd.
//
//   dshmctl [--socket PATH] segments [--json]   owner, size, local copy, clients, counters
//   dshmctl [--socket PATH] peers [--json]      the other hosts and their connections
//   dshmctl [--socket PATH] stats [--json]      both
#include <json-glib/json-glib.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "dshm_client.h"

namespace {

int Usage() {
    fprintf(stderr, "usage: dshmctl [--socket PATH] segments|peers|stats [--json]\n");
    return 2;
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
        JsonObject *st = json_object_get_object_member(s, "stats");
        printf(
            "  faults missing=%lld write=%lld | fetches sent=%lld served=%lld | written back "
            "pages=%lld "
            "bytes=%lld applied=%lld | invalidations sent=%lld received=%lld updates=%lld | "
            "locks acquired=%lld released=%lld\n",
            Int(st, "missing_faults"), Int(st, "wp_faults"), Int(st, "fetches_sent"),
            Int(st, "fetches_served"), Int(st, "pages_written_back"), Int(st, "bytes_written_back"),
            Int(st, "writebacks_applied"), Int(st, "invalidations_sent"),
            Int(st, "invalidations_received"), Int(st, "updates"), Int(st, "acquires"),
            Int(st, "releases"));
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
    std::string socket = "/run/dshm/dshmd.sock", what;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--socket") && i + 1 < argc) {
            socket = argv[++i];
        } else if (!strcmp(argv[i], "--json")) {
            json = true;
        } else if (what.empty() && argv[i][0] != '-') {
            what = argv[i];
        } else {
            return Usage();
        }
    }
    uint32_t q = what == "segments" ? DSHM_CTL_SEGMENTS
                 : what == "peers"  ? DSHM_CTL_PEERS
                 : what == "stats"  ? DSHM_CTL_STATS
                                    : 0;
    if (!q)
        return Usage();
    std::string text;
    dshm::Status st = dshm::CtlQuery(socket, q, &text);
    if (!st.ok()) {
        fprintf(stderr, "dshmctl: %s\n", st.ToString().c_str());
        return 3;
    }
    if (json) {
        printf("%s\n", text.c_str());
        return 0;
    }
    JsonParser *parser = json_parser_new();
    GError *err = nullptr;
    if (!json_parser_load_from_data(parser, text.c_str(), text.size(), &err)) {
        fprintf(stderr, "dshmctl: bad reply from dshmd: %s\n", err->message);
        return 3;
    }
    JsonObject *root = json_node_get_object(json_parser_get_root(parser));
    printf("host %lld (%s)\n", Int(root, "host_id"),
           json_object_get_string_member(root, "host_name"));
    if (json_object_has_member(root, "segments"))
        PrintSegments(root);
    if (json_object_has_member(root, "peers"))
        PrintPeers(root);
    g_object_unref(parser);
    return 0;
}
