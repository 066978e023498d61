#include "config.h"

#include <glib.h>
#include <netdb.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <optional>
#include <vector>

#include "frame.h"

namespace dshm {
namespace {

struct KeyFileDeleter {
    void operator()(GKeyFile *k) const { g_key_file_free(k); }
};

// The keys of each kind of group, in the order FormatConfig prints them.
const std::vector<std::string> kDshmdKeys = {
    "host-id",        "name",           "listen",           "socket",
    "socket-mode",    "socket-group",   "auth",             "auth-key-file",
    "poll-us",        "ack-timeout-ms", "adopt-timeout-ms", "peer-timeout-ms", "write-ahead-pages",
    "read-ahead-pages",
    "io-thread",
    "waiter-threads",  // the former name of io-thread
    "exclusive-pages",  "membership"};
const std::vector<std::string> kPolicyKeys = {
    "window-s", "report-ms", "log-s", "strong-min-events", "strong-min-share", "move-ownership"};
const std::vector<std::string> kPeerKeys = {"host-id", "address"};
const std::vector<std::string> kSegmentKeys = {"size", "owner", "allow"};

// "did you mean 'x'?" for the closest of `known` when it is close enough,
// else the list of known names.
std::string Suggest(const std::string &got, const std::vector<std::string> &known,
                    const std::string &before = "", const std::string &after = "") {
    size_t best = SIZE_MAX;
    std::string best_name;
    for (const auto &k : known) {
        size_t d = EditDistance(got, k);
        if (d < best) {
            best = d;
            best_name = k;
        }
    }
    if (!best_name.empty() && (best <= 2 || best <= got.size() / 3))
        return "did you mean '" + before + best_name + after + "'?";
    std::string list;
    for (const auto &k : known)
        list += (list.empty() ? "" : ", ") + before + k + after;
    return "known: " + list;
}

// 1M etc.; nullopt when not a number with an optional K/M/G suffix or when
// it overflows 64 bits.
std::optional<uint64_t> ParseSize(std::string s) {
    if (s.empty())
        return std::nullopt;
    uint64_t mult = 1;
    switch (s.back()) {
        case 'K':
        case 'k':
            mult = 1ull << 10;
            break;
        case 'M':
        case 'm':
            mult = 1ull << 20;
            break;
        case 'G':
        case 'g':
            mult = 1ull << 30;
            break;
        default:
            break;
    }
    if (mult != 1)
        s.pop_back();
    guint64 n = 0;
    if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos ||
        !g_ascii_string_to_unsigned(s.c_str(), 10, 0, G_MAXUINT64, &n, nullptr)) {
        return std::nullopt;
    }
    uint64_t v = 0;
    if (__builtin_mul_overflow(static_cast<uint64_t>(n), mult, &v))
        return std::nullopt;
    return v;
}

std::string FormatDouble(double v) {
    char buf[G_ASCII_DTOSTR_BUF_SIZE];
    return g_ascii_formatd(buf, sizeof buf, "%g", v);
}

std::string FormatSize(uint64_t v) {
    if (v && v % (1ull << 30) == 0)
        return std::to_string(v >> 30) + "G";
    if (v && v % (1ull << 20) == 0)
        return std::to_string(v >> 20) + "M";
    if (v && v % (1ull << 10) == 0)
        return std::to_string(v >> 10) + "K";
    return std::to_string(v);
}

// What the raw text says about a group: where it and its keys are.
struct RawGroup {
    std::string name;
    int line = 0;
    std::map<std::string, int> keys;  // key -> line
};

std::string Chug(std::string_view s) {
    size_t i = 0;
    while (i < s.size() && g_ascii_isspace(s[i]))
        i++;
    return std::string(s.substr(i));
}

std::string Chomp(std::string s) {
    while (!s.empty() && g_ascii_isspace(s.back()))
        s.pop_back();
    return s;
}

// Scans text that GKeyFile accepted for its group headers and keys, as
// GKeyFile reads them (leading blanks skipped, '#' comment lines, key up to
// '=' without trailing blanks).  Fails on a group given twice and on a key
// set twice in one group: GKeyFile would merge the one and keep the last of
// the other, silently.
Status ScanRaw(const std::string &text, const std::string &origin, std::vector<RawGroup> *out) {
    std::map<std::string, int> seen;  // group -> its line
    int lineno = 0;
    size_t pos = 0;
    while (pos <= text.size()) {
        size_t nl = text.find('\n', pos);
        std::string_view raw(text.data() + pos, (nl == std::string::npos ? text.size() : nl) - pos);
        pos = nl == std::string::npos ? text.size() + 1 : nl + 1;
        lineno++;
        std::string line = Chug(raw);
        if (line.empty() || line[0] == '#')
            continue;
        if (line[0] == '[') {
            size_t close = line.find(']');
            std::string name =
                line.substr(1, close == std::string::npos ? std::string::npos : close - 1);
            auto [it, fresh] = seen.emplace(name, lineno);
            if (!fresh) {
                return Status::Proto(origin + ":" + std::to_string(lineno) + ": [" + name +
                                     "]: group given twice (first at line " +
                                     std::to_string(it->second) +
                                     "); GKeyFile would merge them silently");
            }
            out->push_back(RawGroup{name, lineno, {}});
            continue;
        }
        size_t eq = line.find('=');
        if (eq == std::string::npos || out->empty())
            continue;  // GKeyFile refused such a line already
        std::string key = Chomp(line.substr(0, eq));
        auto [it, fresh] = out->back().keys.emplace(key, lineno);
        if (!fresh) {
            return Status::Proto(origin + ":" + std::to_string(lineno) + ": [" + out->back().name +
                                 "] " + key + ": set twice in this group (first at line " +
                                 std::to_string(it->second) + ")");
        }
    }
    return Status::OK();
}

class Reader {
  public:
    Reader(GKeyFile *kf, const std::string &origin, const std::vector<RawGroup> &raw)
        : kf_(kf), origin_(origin) {
        for (const auto &g : raw)
            raw_[g.name] = &g;
    }

    // A key's trimmed value; "" and OK when it is absent and not required.
    // Empty values and values that look like they carry an inline comment
    // are errors.  Records the key in *given.
    Status Get(const char *group, const char *key, bool required, std::string *out,
               std::set<std::string> *given = nullptr) {
        GError *err = nullptr;
        gchar *v = g_key_file_get_string(kf_, group, key, &err);
        if (!v) {
            bool missing = err && (err->code == G_KEY_FILE_ERROR_KEY_NOT_FOUND ||
                                   err->code == G_KEY_FILE_ERROR_GROUP_NOT_FOUND);
            std::string msg = err ? err->message : "?";
            g_clear_error(&err);
            if (missing && !required)
                return Status::OK();
            return Status::Proto(Where(group, key) + (missing ? "missing" : msg));
        }
        std::string s = g_strstrip(v);
        g_free(v);
        if (s.empty()) {
            return Status::Proto(Where(group, key) +
                                 "empty value (remove the line to get the default)");
        }
        for (const char *c : {" #", "\t#", " ;", "\t;"}) {
            if (s.find(c) != std::string::npos) {
                return Status::Proto(Where(group, key) + "'" + s +
                                     "': GKeyFile has no inline comments (a ' #' or ' ;' and "
                                     "what follows are part of the value): put the comment on "
                                     "a line of its own");
            }
        }
        *out = s;
        if (given)
            given->insert(std::string(group) + "/" + key);
        return Status::OK();
    }

    Status GetU64(const char *group, const char *key, bool required, uint64_t min, uint64_t max,
                  uint64_t *out, std::set<std::string> *given = nullptr) {
        std::string s;
        Status st = Get(group, key, required, &s, given);
        if (!st.ok() || s.empty())
            return st;
        guint64 v = 0;
        if (s.find_first_not_of("0123456789") != std::string::npos ||
            !g_ascii_string_to_unsigned(s.c_str(), 10, min, max, &v, nullptr)) {
            return Status::Proto(Where(group, key) + "'" + s + "' is not a number in " +
                                 std::to_string(min) + ".." + std::to_string(max));
        }
        *out = v;
        return Status::OK();
    }

    Status GetU32(const char *group, const char *key, bool required, uint32_t min, uint32_t max,
                  uint32_t *out, std::set<std::string> *given = nullptr) {
        uint64_t v = *out;
        Status st = GetU64(group, key, required, min, max, &v, given);
        *out = static_cast<uint32_t>(v);
        return st;
    }

    Status GetDouble(const char *group, const char *key, double min, double max, double *out,
                     std::set<std::string> *given) {
        std::string s;
        Status st = Get(group, key, false, &s, given);
        if (!st.ok() || s.empty())
            return st;
        char *end = nullptr;
        double v = g_ascii_strtod(s.c_str(), &end);
        if (end != s.c_str() + s.size() || !std::isfinite(v) || v < min || v > max) {
            return Status::Proto(Where(group, key) + "'" + s + "' is not a number in " +
                                 FormatDouble(min) + ".." + FormatDouble(max));
        }
        *out = v;
        return Status::OK();
    }

    Status GetBool(const char *group, const char *key, bool *out, std::set<std::string> *given) {
        std::string s;
        Status st = Get(group, key, false, &s, given);
        if (!st.ok() || s.empty())
            return st;
        std::string l = s;
        for (char &ch : l)
            ch = static_cast<char>(g_ascii_tolower(ch));
        if (l == "true" || l == "yes" || l == "on" || l == "1") {
            *out = true;
        } else if (l == "false" || l == "no" || l == "off" || l == "0") {
            *out = false;
        } else {
            return Status::Proto(Where(group, key) + "'" + s + "' is not true or false");
        }
        return Status::OK();
    }

    // Fails on the first key of `group` that is not in `known`, suggesting
    // the closest known one.
    Status OnlyKeys(const std::string &group, const std::vector<std::string> &known) {
        auto it = raw_.find(group);
        if (it == raw_.end())
            return Status::OK();
        // In the order of the file, so that the first one is reported.
        std::vector<std::pair<int, std::string>> keys;
        for (const auto &[k, line] : it->second->keys)
            keys.emplace_back(line, k);
        std::sort(keys.begin(), keys.end());
        for (const auto &[line, k] : keys) {
            if (std::find(known.begin(), known.end(), k) == known.end()) {
                return Status::Proto(Where(group.c_str(), k.c_str()) + "unknown key; " +
                                     Suggest(k, known));
            }
        }
        return Status::OK();
    }

    // "FILE:LINE: [GROUP] KEY: " (the key's line, else its group's).
    std::string Where(const char *group, const char *key) const {
        return origin_ + ":" + std::to_string(Line(group, key)) + ": [" + group + "] " + key + ": ";
    }
    std::string Where(const std::string &group) const {
        return origin_ + ":" + std::to_string(Line(group.c_str(), nullptr)) + ": [" + group + "]: ";
    }

  private:
    int Line(const char *group, const char *key) const {
        auto it = raw_.find(group);
        if (it == raw_.end())
            return 0;
        if (key) {
            auto k = it->second->keys.find(key);
            if (k != it->second->keys.end())
                return k->second;
        }
        return it->second->line;
    }

    GKeyFile *kf_;
    std::string origin_;
    std::map<std::string, const RawGroup *> raw_;
};

}  // namespace

const char *MembershipModeName(MembershipMode m) {
    return m == MembershipMode::kCorosync ? "corosync" : "static";
}

size_t EditDistance(const std::string &a, const std::string &b) {
    std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
    for (size_t j = 0; j <= b.size(); j++)
        prev[j] = j;
    for (size_t i = 1; i <= a.size(); i++) {
        cur[0] = i;
        for (size_t j = 1; j <= b.size(); j++) {
            size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
            cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
        }
        std::swap(prev, cur);
    }
    return prev[b.size()];
}

bool SplitHostPort(const std::string &addr, std::string *host, uint16_t *port) {
    auto colon = addr.rfind(':');
    if (colon == std::string::npos || colon == 0)
        return false;
    std::string p = addr.substr(colon + 1);
    if (p.empty() || p.size() > 5 || p.find_first_not_of("0123456789") != std::string::npos) {
        return false;
    }
    unsigned long v = std::stoul(p);
    if (v == 0 || v > 65535)
        return false;
    *host = addr.substr(0, colon);
    if (host->size() > 2 && host->front() == '[' && host->back() == ']') {
        *host = host->substr(1, host->size() - 2);
    }
    *port = static_cast<uint16_t>(v);
    return true;
}

Status ParseConfig(const std::string &text, const std::string &origin, Config *out) {
    std::unique_ptr<GKeyFile, KeyFileDeleter> kf(g_key_file_new());
    GError *err = nullptr;
    if (!g_key_file_load_from_data(kf.get(), text.data(), text.size(), G_KEY_FILE_NONE, &err)) {
        Status st = Status::Proto(origin + ": " + err->message);
        g_error_free(err);
        return st;
    }
    std::vector<RawGroup> raw;
    Status st = ScanRaw(text, origin, &raw);
    if (!st.ok())
        return st;
    Reader r(kf.get(), origin, raw);
    Config c;
    // Every group is known, named and has only known keys.
    for (const auto &g : raw) {
        const std::vector<std::string> *known = nullptr;
        if (g.name == "dshmd") {
            known = &kDshmdKeys;
        } else if (g.name == "policy") {
            known = &kPolicyKeys;
        } else if (g.name.rfind("peer ", 0) == 0 || g.name == "peer") {
            known = &kPeerKeys;
        } else if (g.name.rfind("segment ", 0) == 0 || g.name == "segment") {
            known = &kSegmentKeys;
        } else {
            // Suggest by the group's first word: [segmnet a] -> [segment a].
            size_t sp = g.name.find(' ');
            std::string word = g.name.substr(0, sp);
            std::string rest = sp == std::string::npos ? "" : g.name.substr(sp);
            std::string best;
            size_t bestd = SIZE_MAX;
            for (const char *k : {"dshmd", "policy", "peer", "segment"}) {
                size_t d = EditDistance(word, k);
                if (d < bestd) {
                    bestd = d;
                    best = k;
                }
            }
            std::string hint;
            if (bestd <= 2 || bestd <= word.size() / 3) {
                if (best == "peer" || best == "segment")
                    best += rest.empty() ? " NAME" : rest;
                hint = "did you mean '[" + best + "]'? ";
            }
            return Status::Proto(r.Where(g.name) + "unknown group; " + hint +
                                 "(groups: [dshmd], [policy], [peer NAME], [segment NAME])");
        }
        if (g.name == "peer" || g.name == "segment" || g.name == "peer " || g.name == "segment ") {
            return Status::Proto(r.Where(g.name) + "needs a name: [" + Chomp(g.name) + " NAME]");
        }
        st = r.OnlyKeys(g.name, *known);
        if (!st.ok())
            return st;
    }

    if (!g_key_file_has_group(kf.get(), "dshmd"))
        return Status::Proto(origin + ": no [dshmd] group");
    std::set<std::string> *given = &c.given;
    st = r.GetU32("dshmd", "host-id", true, 0, DSHM_MAX_HOSTS - 1, &c.host_id, given);
    if (st.ok())
        st = r.Get("dshmd", "listen", true, &c.listen, given);
    if (st.ok())
        st = r.Get("dshmd", "socket", false, &c.socket_path, given);
    std::string mode;
    if (st.ok())
        st = r.Get("dshmd", "socket-mode", false, &mode, given);
    if (st.ok() && !mode.empty()) {
        guint64 m = 0;
        if (mode.find_first_not_of("01234567") != std::string::npos ||
            !g_ascii_string_to_unsigned(mode.c_str(), 8, 0, 0777, &m, nullptr) ||
            (m & 0600) != 0600) {
            st = Status::Proto(r.Where("dshmd", "socket-mode") + "'" + mode +
                               "' is not an octal mode in 0600..0777 (the owner reads and writes)");
        }
        c.socket_mode = static_cast<uint32_t>(m);
    }
    if (st.ok())
        st = r.Get("dshmd", "socket-group", false, &c.socket_group, given);
    if (st.ok())
        st = r.GetBool("dshmd", "auth", &c.auth, given);
    if (st.ok())
        st = r.Get("dshmd", "auth-key-file", false, &c.auth_key_file, given);
    if (st.ok() && c.auth_key_file[0] != '/') {
        st = Status::Proto(r.Where("dshmd", "auth-key-file") + "'" + c.auth_key_file +
                           "' is not an absolute path");
    }
    if (st.ok())
        st = r.Get("dshmd", "name", false, &c.host_name, given);
    if (st.ok())
        st = r.GetU32("dshmd", "poll-us", false, 0, 1000000, &c.poll_us, given);
    if (st.ok())
        st = r.GetU32("dshmd", "ack-timeout-ms", false, 0, 3600000, &c.ack_timeout_ms, given);
    if (st.ok()) {
        st = r.GetU32("dshmd", "adopt-timeout-ms", false, 100, 3600000, &c.adopt_timeout_ms, given);
    }
    if (st.ok())
        st = r.GetU32("dshmd", "peer-timeout-ms", false, 100, 3600000, &c.peer_timeout_ms, given);
    if (st.ok())
        st = r.GetU32("dshmd", "write-ahead-pages", false, 0, 256, &c.write_ahead_pages, given);
    if (st.ok())
        st = r.GetU32("dshmd", "read-ahead-pages", false, 0, 1024, &c.read_ahead_pages, given);
    if (st.ok())
        st = r.GetBool("dshmd", "waiter-threads", &c.io_thread, given);  // the former name
    if (st.ok())
        st = r.GetBool("dshmd", "io-thread", &c.io_thread, given);
    if (st.ok())
        st = r.GetBool("dshmd", "exclusive-pages", &c.exclusive_pages, given);
    std::string membership;
    if (st.ok())
        st = r.Get("dshmd", "membership", false, &membership, given);
    if (!st.ok())
        return st;
    if (membership == "corosync") {
        c.membership = MembershipMode::kCorosync;
    } else if (!membership.empty() && membership != "static") {
        return Status::Proto(r.Where("dshmd", "membership") + "'" + membership +
                             "' is not static or corosync");
    }
    if (c.given.erase("dshmd/waiter-threads"))
        c.given.insert("dshmd/io-thread");
    if (g_key_file_has_group(kf.get(), "policy")) {
        PolicyConfig &p = c.policy;
        st = r.GetU32("policy", "window-s", false, 1, Monitor::kMaxWindowS, &p.window_s, given);
        if (st.ok())
            st = r.GetU32("policy", "report-ms", false, 100, 60000, &p.report_ms, given);
        if (st.ok())
            st = r.GetU32("policy", "log-s", false, 0, 86400, &p.log_s, given);
        if (st.ok()) {
            st = r.GetU64("policy", "strong-min-events", false, 0, 1000000000, &p.strong_min_events,
                          given);
        }
        if (st.ok()) {
            st = r.GetDouble("policy", "strong-min-share", 0.0, 1.0, &p.strong_min_share, given);
        }
        if (st.ok())
            st = r.GetBool("policy", "move-ownership", &p.move_ownership, given);
        if (!st.ok())
            return st;
    }
    std::string h;
    uint16_t port;
    if (!SplitHostPort(c.listen, &h, &port)) {
        return Status::Proto(r.Where("dshmd", "listen") + "'" + c.listen + "' is not host:port");
    }
    if (c.socket_path[0] != '/') {
        return Status::Proto(r.Where("dshmd", "socket") + "'" + c.socket_path +
                             "' is not an absolute path");
    }
    if (c.socket_path.size() >= sizeof(sockaddr_un::sun_path)) {
        return Status::Proto(
            r.Where("dshmd", "socket") + "'" + c.socket_path + "' is longer than " +
            std::to_string(sizeof(sockaddr_un::sun_path) - 1) + " bytes (a unix socket's limit)");
    }
    if (c.host_name.empty())
        c.host_name = "host" + std::to_string(c.host_id);
    const bool corosync = c.membership == MembershipMode::kCorosync;
    if (corosync && (h.empty() || h == "0.0.0.0" || h == "::" || h == "*")) {
        return Status::Proto(r.Where("dshmd", "listen") + "'" + c.listen +
                             "': with membership = corosync this host announces its listen "
                             "address to the others, so it must be one they can dial, not a "
                             "wildcard");
    }

    std::set<uint32_t> ids{c.host_id};
    for (const auto &rg : raw) {
        const std::string &g = rg.name;
        if (g.rfind("peer ", 0) == 0) {
            if (corosync) {
                return Status::Proto(r.Where(g) +
                                     "[peer] groups are for membership = static; with corosync "
                                     "the members of the group announce their addresses");
            }
            PeerConfig p;
            p.name = g.substr(5);
            st = r.GetU32(g.c_str(), "host-id", true, 0, DSHM_MAX_HOSTS - 1, &p.host_id);
            if (st.ok())
                st = r.Get(g.c_str(), "address", true, &p.address);
            if (!st.ok())
                return st;
            if (!SplitHostPort(p.address, &h, &port)) {
                return Status::Proto(r.Where(g.c_str(), "address") + "'" + p.address +
                                     "' is not host:port");
            }
            if (!ids.insert(p.host_id).second) {
                return Status::Proto(r.Where(g.c_str(), "host-id") + "host id " +
                                     std::to_string(p.host_id) + " is used twice");
            }
            c.peers.push_back(std::move(p));
        } else if (g.rfind("segment ", 0) == 0) {
            SegmentConfig s;
            s.name = g.substr(8);
            if (!IsValidSegmentName(s.name)) {
                return Status::Proto(r.Where(g) +
                                     "segment names are 1..31 characters of A-Z a-z 0-9 . _ -, "
                                     "and not '.' or '..'");
            }
            std::string size;
            st = r.Get(g.c_str(), "size", true, &size);
            if (st.ok())
                st = r.GetU32(g.c_str(), "owner", true, 0, DSHM_MAX_HOSTS - 1, &s.owner);
            std::string allow;
            if (st.ok())
                st = r.Get(g.c_str(), "allow", false, &allow);
            if (!st.ok())
                return st;
            gchar **uuids = g_strsplit(allow.c_str(), ";", -1);
            for (gchar **u = uuids; *u; u++) {
                std::string id = g_strstrip(*u);
                if (id.empty())
                    continue;
                if (!g_uuid_string_is_valid(id.c_str())) {
                    g_strfreev(uuids);
                    return Status::Proto(r.Where(g.c_str(), "allow") + "'" + id +
                                         "' is not a UUID (8-4-4-4-12 hex digits; list them "
                                         "separated by ';')");
                }
                for (char &ch : id)
                    ch = static_cast<char>(g_ascii_tolower(ch));
                s.allow.push_back(id);
            }
            g_strfreev(uuids);
            if (!allow.empty() && s.allow.empty()) {
                return Status::Proto(r.Where(g.c_str(), "allow") +
                                     "no UUID in the list (remove the key to allow any client)");
            }
            auto v = ParseSize(size);
            if (!v || *v == 0 || *v % DSHM_PAGE_SIZE != 0 || *v > (64ull << 30)) {
                return Status::Proto(r.Where(g.c_str(), "size") + "'" + size +
                                     "' is not a multiple of 4096 between 4K and 64G");
            }
            s.size = *v;
            c.segments.push_back(std::move(s));
        }
    }
    if (c.segments.empty()) {
        return Status::Proto(origin +
                             ": no [segment NAME] group: dshmd needs at least one "
                             "segment to serve");
    }
    for (const auto &s : c.segments) {
        if (!corosync && !ids.count(s.owner)) {
            return Status::Proto(r.Where(("segment " + s.name).c_str(), "owner") + "host " +
                                 std::to_string(s.owner) + " is neither this host nor a peer");
        }
    }
    *out = std::move(c);
    return Status::OK();
}

Status ResolveListen(const Config &c, const std::string &origin) {
    std::string host;
    uint16_t port;
    if (!SplitHostPort(c.listen, &host, &port))
        return Status::Proto(origin + ": [dshmd] listen: '" + c.listen + "' is not host:port");
    struct addrinfo hints = {}, *res = nullptr;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res);
    if (rc != 0 || !res) {
        return Status::Proto(origin + ": [dshmd] listen: cannot resolve '" + host +
                             "': " + (rc ? gai_strerror(rc) : "no address"));
    }
    freeaddrinfo(res);
    return Status::OK();
}

Status LoadConfig(const std::string &path, Config *out) {
    gchar *text = nullptr;
    gsize len = 0;
    GError *err = nullptr;
    if (!g_file_get_contents(path.c_str(), &text, &len, &err)) {
        Status st = Status::Internal(std::string("cannot read config: ") + err->message);
        g_error_free(err);
        return st;
    }
    Config c;
    Status st = ParseConfig(std::string(text, len), path, &c);
    g_free(text);
    if (st.ok())
        st = ResolveListen(c, path);
    if (st.ok())
        *out = std::move(c);
    return st;
}

namespace {

// A string value as a key file holds it: GKeyFile's escapes (\n, \t,
// \\, a leading space as \s), so that what it reads back is `v` again.
std::string EscapeValue(const std::string &v) {
    std::unique_ptr<GKeyFile, KeyFileDeleter> kf(g_key_file_new());
    g_key_file_set_string(kf.get(), "g", "k", v.c_str());
    gchar *raw = g_key_file_get_value(kf.get(), "g", "k", nullptr);
    std::string out = raw ? raw : "";
    g_free(raw);
    return out;
}

}  // namespace

std::string FormatConfig(const Config &c) {
    std::string o =
        "# The effective configuration: keys the file does not set are commented out and\n"
        "# marked (default).\n";
    auto key = [&](const char *group, const char *k, const std::string &v) {
        bool dflt = !c.given.count(std::string(group) + "/" + k);
        o += std::string(dflt ? "# " : "") + k + " = " + v + (dflt ? "  (default)" : "") + "\n";
    };
    auto b = [](bool v) { return std::string(v ? "true" : "false"); };
    o += "[dshmd]\n";
    key("dshmd", "host-id", std::to_string(c.host_id));
    key("dshmd", "name", EscapeValue(c.host_name));
    key("dshmd", "listen", EscapeValue(c.listen));
    key("dshmd", "socket", EscapeValue(c.socket_path));
    {
        char m[8];
        snprintf(m, sizeof m, "%04o", unsigned(c.socket_mode));
        key("dshmd", "socket-mode", m);
    }
    if (c.socket_group.empty())
        o += "# socket-group = GROUP  (default: dshmd's group)\n";
    else
        key("dshmd", "socket-group", EscapeValue(c.socket_group));
    key("dshmd", "auth", b(c.auth));
    key("dshmd", "auth-key-file", EscapeValue(c.auth_key_file));
    key("dshmd", "poll-us", std::to_string(c.poll_us));
    key("dshmd", "ack-timeout-ms", std::to_string(c.ack_timeout_ms));
    key("dshmd", "adopt-timeout-ms", std::to_string(c.adopt_timeout_ms));
    key("dshmd", "peer-timeout-ms", std::to_string(c.peer_timeout_ms));
    key("dshmd", "write-ahead-pages", std::to_string(c.write_ahead_pages));
    key("dshmd", "read-ahead-pages", std::to_string(c.read_ahead_pages));
    key("dshmd", "io-thread", b(c.io_thread));
    key("dshmd", "exclusive-pages", b(c.exclusive_pages));
    key("dshmd", "membership", MembershipModeName(c.membership));
    o += std::string("# the I/O thread runs: ") + (c.UsesIoThread() ? "yes" : "no") +
         " (when poll-us is 0 and io-thread true)\n";
    o += "\n[policy]\n";
    const PolicyConfig &p = c.policy;
    key("policy", "window-s", std::to_string(p.window_s));
    key("policy", "report-ms", std::to_string(p.report_ms));
    key("policy", "log-s", std::to_string(p.log_s));
    key("policy", "strong-min-events", std::to_string(p.strong_min_events));
    key("policy", "strong-min-share", FormatDouble(p.strong_min_share));
    key("policy", "move-ownership", b(p.move_ownership));
    for (const auto &pc : c.peers) {
        o += "\n[peer " + pc.name + "]\nhost-id = " + std::to_string(pc.host_id) +
             "\naddress = " + EscapeValue(pc.address) + "\n";
    }
    for (const auto &s : c.segments) {
        o += "\n[segment " + s.name + "]\nsize = " + FormatSize(s.size) +
             "\nowner = " + std::to_string(s.owner) + "\n";
        std::string allow;
        for (const auto &u : s.allow)
            allow += (allow.empty() ? "" : ";") + u;
        o += allow.empty() ? "# allow = (any local client)\n" : "allow = " + allow + "\n";
    }
    return o;
}

}  // namespace dshm
