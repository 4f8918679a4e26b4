#include "coordinator/state.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <stdexcept>
#include <nlohmann/json.hpp>
#include <sstream>

namespace mcm::coord {

using nlohmann::json;

std::string FileStateStore::to_json(const State& s) {
    json j;
    j["format"] = 1;
    j["cluster_id"] = s.cluster_id;
    j["secret_check"] = s.secret_check;
    j["buckets"] = s.buckets;
    j["replicas"] = s.replicas;
    j["epoch"] = s.epoch;
    j["members"] = json::array();
    for (const MemberState& m : s.members) {
        j["members"].push_back({{"name", m.name},
                                {"addr", m.addr},
                                {"status", m.joining           ? "joining"
                                           : m.drain == "drain"  ? "draining"
                                           : m.drain == "remove" ? "leaving"
                                                                 : "member"},
                                {"boot_id", m.boot_id}});
    }
    j["map"] = s.map_text;
    j["takeovers"] = json::array();
    for (const TakeoverState& t : s.takeovers) {
        j["takeovers"].push_back(
            {{"node", t.node}, {"addr", t.addr}, {"holder", t.holder}, {"mode", t.mode}});
    }
    if (s.rebalance) j["rebalance"] = true;
    // Strings that are not UTF-8 (none should get here: maps and heartbeats are checked)
    // are written with U+FFFD rather than throwing out of the save.
    return j.dump(1, ' ', false, json::error_handler_t::replace) + "\n";
}

namespace {

// A whole number of the file that fits T: nlohmann's get<> casts a float or a negative
// number as it is (undefined behaviour when out of range, found by fuzz/coord_state).
template <class T>
T whole(const json& j, const char* key) {
    const json& v = j.at(key);
    if (!v.is_number_integer() ||
        (v.is_number_unsigned() ? v.get<uint64_t>() > std::numeric_limits<T>::max()
                                : (v.get<int64_t>() < 0 ||
                                   static_cast<uint64_t>(v.get<int64_t>()) >
                                       std::numeric_limits<T>::max()))) {
        throw std::runtime_error(std::string(key) + ": not a whole number in range");
    }
    return v.is_number_unsigned() ? static_cast<T>(v.get<uint64_t>())
                                  : static_cast<T>(v.get<int64_t>());
}

}  // namespace

bool FileStateStore::from_json(const std::string& text, State* out, std::string* err) {
    try {
        json j = json::parse(text);
        if (whole<uint32_t>(j, "format") != 1) {
            *err = "unknown state format";
            return false;
        }
        State s;
        s.cluster_id = j.at("cluster_id").get<std::string>();
        s.secret_check = j.at("secret_check").get<std::string>();
        s.buckets = whole<uint32_t>(j, "buckets");
        s.replicas = whole<uint32_t>(j, "replicas");
        s.epoch = whole<uint64_t>(j, "epoch");
        for (const json& m : j.at("members")) {
            MemberState ms;
            ms.name = m.at("name").get<std::string>();
            ms.addr = m.at("addr").get<std::string>();
            std::string st = m.at("status").get<std::string>();
            if (st != "member" && st != "joining" && st != "draining" && st != "leaving") {
                *err = "member " + ms.name + ": unknown status " + st;
                return false;
            }
            ms.joining = st == "joining";
            ms.drain = st == "draining" ? "drain" : st == "leaving" ? "remove" : "";
            ms.boot_id = m.at("boot_id").get<std::string>();
            s.members.push_back(std::move(ms));
        }
        s.map_text = j.at("map").get<std::string>();
        if (j.contains("takeovers")) {
            for (const json& t : j.at("takeovers")) {
                TakeoverState ts;
                ts.node = t.at("node").get<std::string>();
                ts.addr = t.at("addr").get<std::string>();
                ts.holder = t.at("holder").get<std::string>();
                ts.mode = t.at("mode").get<std::string>();
                if (ts.mode != "listen" && ts.mode != "hook") {
                    *err = "takeover of " + ts.node + ": unknown mode " + ts.mode;
                    return false;
                }
                s.takeovers.push_back(std::move(ts));
            }
        }
        s.rebalance = j.value("rebalance", false);
        *out = std::move(s);
        return true;
    } catch (const std::exception& e) {
        *err = e.what();
        return false;
    }
}

StateStore::Load FileStateStore::load(State* out, std::string* err) {
    std::ifstream f(path_, std::ios::binary);
    if (!f) {
        if (errno == ENOENT) return Load::Missing;
        *err = "cannot read " + path_ + ": " + strerror(errno);
        return Load::Error;
    }
    std::stringstream ss;
    ss << f.rdbuf();
    if (!from_json(ss.str(), out, err)) {
        *err = path_ + " is corrupt: " + *err;
        return Load::Error;
    }
    return Load::Ok;
}

namespace {

bool write_all(int fd, const std::string& data) {
    size_t off = 0;
    while (off < data.size()) {
        ssize_t n = write(fd, data.data() + off, data.size() - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        off += static_cast<size_t>(n);
    }
    return true;
}

std::string dir_of(const std::string& path) {
    size_t slash = path.rfind('/');
    if (slash == std::string::npos) return ".";
    return slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

bool FileStateStore::save(const State& s, std::string* err) {
    std::string tmp = path_ + ".tmp";
    std::string data = to_json(s);
    int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        *err = "cannot write " + tmp + ": " + strerror(errno);
        return false;
    }
    bool ok = write_all(fd, data) && fsync(fd) == 0;
    int saved = errno;
    close(fd);
    if (!ok || rename(tmp.c_str(), path_.c_str()) != 0) {
        *err = "cannot save " + path_ + ": " + strerror(ok ? errno : saved);
        unlink(tmp.c_str());
        return false;
    }
    int dfd = open(dir_of(path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        ok = fsync(dfd) == 0;
        close(dfd);
    }
    if (dfd < 0 || !ok) {
        *err = "cannot fsync the directory of " + path_ + ": " + strerror(errno);
        return false;
    }
    return true;
}

}  // namespace mcm::coord
