#include "config.h"

#include <glib.h>

#include <cctype>
#include <cmath>
#include <memory>
#include <optional>
#include <set>

namespace dshm {
namespace {

struct KeyFileDeleter {
    void operator()(GKeyFile *k) const { g_key_file_free(k); }
};
struct StrvDeleter {
    void operator()(gchar **v) const { g_strfreev(v); }
};

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
    if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos || s.size() > 12) {
        return std::nullopt;
    }
    return std::stoull(s) * mult;
}

std::string FormatDouble(double v) {
    char buf[G_ASCII_DTOSTR_BUF_SIZE];
    return g_ascii_formatd(buf, sizeof buf, "%g", v);
}

bool ValidSegmentName(const std::string &n) {
    if (n.empty() || n.size() >= DSHM_SEGNAME_LEN)
        return false;
    for (char c : n) {
        if (!isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-')
            return false;
    }
    return true;
}

class Reader {
  public:
    Reader(GKeyFile *kf, const std::string &origin) : kf_(kf), origin_(origin) {}

    Status Get(const char *group, const char *key, bool required, std::string *out) {
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
        *out = g_strstrip(v);
        g_free(v);
        return Status::OK();
    }

    Status GetU64(const char *group, const char *key, bool required, uint64_t min, uint64_t max,
                  uint64_t *out) {
        std::string s;
        Status st = Get(group, key, required, &s);
        if (!st.ok() || s.empty())
            return st;
        if (s.find_first_not_of("0123456789") != std::string::npos || s.size() > 19 ||
            std::stoull(s) < min || std::stoull(s) > max) {
            return Status::Proto(Where(group, key) + "'" + s + "' is not a number in " +
                                 std::to_string(min) + ".." + std::to_string(max));
        }
        *out = std::stoull(s);
        return Status::OK();
    }

    Status GetU32(const char *group, const char *key, bool required, uint32_t min, uint32_t max,
                  uint32_t *out) {
        uint64_t v = *out;
        Status st = GetU64(group, key, required, min, max, &v);
        *out = static_cast<uint32_t>(v);
        return st;
    }

    Status GetU32(const char *group, const char *key, bool required, uint32_t max, uint32_t *out) {
        return GetU32(group, key, required, 0, max, out);
    }

    Status GetDouble(const char *group, const char *key, double min, double max, double *out) {
        std::string s;
        Status st = Get(group, key, false, &s);
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

    Status GetBool(const char *group, const char *key, bool *out) {
        std::string s;
        Status st = Get(group, key, false, &s);
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

    // Fails on the first key of `group` that is not in `known`.
    Status OnlyKeys(const char *group, const std::set<std::string> &known) {
        gsize n = 0;
        std::unique_ptr<gchar *, StrvDeleter> keys(g_key_file_get_keys(kf_, group, &n, nullptr));
        for (gsize i = 0; keys && i < n; i++) {
            if (!known.count(keys.get()[i]))
                return Status::Proto(Where(group, keys.get()[i]) + "unknown key");
        }
        return Status::OK();
    }

    std::string Where(const char *group, const char *key) const {
        return origin_ + ": [" + group + "] " + key + ": ";
    }

  private:
    GKeyFile *kf_;
    std::string origin_;
};

}  // namespace

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
    Reader r(kf.get(), origin);
    Config c;
    if (!g_key_file_has_group(kf.get(), "dshmd"))
        return Status::Proto(origin + ": no [dshmd] group");
    Status st = r.GetU32("dshmd", "host-id", true, DSHM_MAX_HOSTS - 1, &c.host_id);
    if (st.ok())
        st = r.Get("dshmd", "listen", true, &c.listen);
    if (st.ok())
        st = r.Get("dshmd", "socket", false, &c.socket_path);
    if (st.ok())
        st = r.Get("dshmd", "name", false, &c.host_name);
    if (st.ok())
        st = r.GetU32("dshmd", "poll-us", false, 1000000, &c.poll_us);
    if (st.ok())
        st = r.GetU32("dshmd", "ack-timeout-ms", false, 3600000, &c.ack_timeout_ms);
    if (st.ok())
        st = r.GetU32("dshmd", "adopt-timeout-ms", false, 100, 3600000, &c.adopt_timeout_ms);
    if (st.ok())
        st = r.GetU32("dshmd", "write-ahead-pages", false, 256, &c.write_ahead_pages);
    if (st.ok())
        st = r.GetU32("dshmd", "read-ahead-pages", false, 1024, &c.read_ahead_pages);
    if (st.ok())
        st = r.GetBool("dshmd", "waiter-threads", &c.io_thread);  // the former name
    if (st.ok())
        st = r.GetBool("dshmd", "io-thread", &c.io_thread);
    if (st.ok())
        st = r.GetBool("dshmd", "exclusive-pages", &c.exclusive_pages);
    if (!st.ok())
        return st;
    if (g_key_file_has_group(kf.get(), "policy")) {
        PolicyConfig &p = c.policy;
        st = r.OnlyKeys("policy", {"window-s", "report-ms", "log-s", "strong-min-events",
                                   "strong-min-share", "move-ownership"});
        if (st.ok())
            st = r.GetU32("policy", "window-s", false, 1, Monitor::kMaxWindowS, &p.window_s);
        if (st.ok())
            st = r.GetU32("policy", "report-ms", false, 100, 60000, &p.report_ms);
        if (st.ok())
            st = r.GetU32("policy", "log-s", false, 0, 86400, &p.log_s);
        if (st.ok()) {
            st =
                r.GetU64("policy", "strong-min-events", false, 0, 1000000000, &p.strong_min_events);
        }
        if (st.ok())
            st = r.GetDouble("policy", "strong-min-share", 0.0, 1.0, &p.strong_min_share);
        if (st.ok())
            st = r.GetBool("policy", "move-ownership", &p.move_ownership);
        if (!st.ok())
            return st;
    }
    std::string h;
    uint16_t port;
    if (!SplitHostPort(c.listen, &h, &port)) {
        return Status::Proto(r.Where("dshmd", "listen") + "'" + c.listen + "' is not host:port");
    }
    if (c.host_name.empty())
        c.host_name = "host" + std::to_string(c.host_id);

    std::set<uint32_t> ids{c.host_id};
    std::set<std::string> segs;
    gsize ngroups = 0;
    std::unique_ptr<gchar *, StrvDeleter> groups(g_key_file_get_groups(kf.get(), &ngroups));
    for (gsize i = 0; i < ngroups; i++) {
        std::string g = groups.get()[i];
        if (g == "dshmd" || g == "policy")
            continue;
        if (g.rfind("peer ", 0) == 0) {
            PeerConfig p;
            p.name = g.substr(5);
            st = r.GetU32(g.c_str(), "host-id", true, DSHM_MAX_HOSTS - 1, &p.host_id);
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
            if (!ValidSegmentName(s.name)) {
                return Status::Proto(origin + ": [" + g +
                                     "]: segment names are 1..31 characters of A-Z a-z 0-9 . _ -");
            }
            if (!segs.insert(s.name).second) {
                return Status::Proto(origin + ": [" + g + "]: segment defined twice");
            }
            std::string size;
            st = r.Get(g.c_str(), "size", true, &size);
            if (st.ok())
                st = r.GetU32(g.c_str(), "owner", true, DSHM_MAX_HOSTS - 1, &s.owner);
            if (!st.ok())
                return st;
            auto v = ParseSize(size);
            if (!v || *v == 0 || *v % DSHM_PAGE_SIZE != 0 || *v > (64ull << 30)) {
                return Status::Proto(r.Where(g.c_str(), "size") + "'" + size +
                                     "' is not a multiple of 4096 between 4K and 64G");
            }
            s.size = *v;
            c.segments.push_back(std::move(s));
        } else {
            return Status::Proto(origin + ": unknown group [" + g + "]");
        }
    }
    for (const auto &s : c.segments) {
        if (!ids.count(s.owner)) {
            return Status::Proto(origin + ": [segment " + s.name + "] owner: host " +
                                 std::to_string(s.owner) + " is neither this host nor a peer");
        }
    }
    *out = std::move(c);
    return Status::OK();
}

Status LoadConfig(const std::string &path, Config *out) {
    gchar *text = nullptr;
    gsize len = 0;
    GError *err = nullptr;
    if (!g_file_get_contents(path.c_str(), &text, &len, &err)) {
        Status st = Status::Proto(std::string("cannot read config: ") + err->message);
        g_error_free(err);
        return st;
    }
    Status st = ParseConfig(std::string(text, len), path, out);
    g_free(text);
    return st;
}

}  // namespace dshm
