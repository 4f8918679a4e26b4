// What the coordinator must remember across restarts, and where it keeps it. StateStore is
// the seam between backends (the file here, etcd in coordinator/etcd/store.h): load() and
// save() only.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mcm::coord {

struct MemberState {
    std::string name;
    std::string addr;       // host:port
    bool joining = false;   // added, not yet caught up (status "joining" in the file)
    // "drain" (status "draining"): a rebalance moves what it holds elsewhere; "remove"
    // (status "leaving"): and then it leaves the map.
    std::string drain;
    std::string boot_id;    // last seen ("" before the first heartbeat)
    bool operator==(const MemberState&) const = default;
};

// An address takeover in force: `holder` answers on `node`'s client address `addr` (a
// listener, or whatever the hook did), to be released once `node` is back in sync.
struct TakeoverState {
    std::string node;
    std::string addr;    // host:port
    std::string holder;
    std::string mode;    // "listen" or "hook"
    bool operator==(const TakeoverState&) const = default;
};

struct State {
    std::string cluster_id;    // random, drawn at the first start
    std::string secret_check;  // HMAC(secret, cluster_id) in hex: refuses another cluster's file
    uint32_t buckets = 0;
    uint32_t replicas = 0;
    uint64_t epoch = 0;
    std::vector<MemberState> members;
    std::string map_text;      // the map in its text form (doc/managed.md)
    std::vector<TakeoverState> takeovers;  // absent in older files: none
    bool rebalance = false;    // a rebalance was running: it goes on after a restart
    bool operator==(const State&) const = default;
};

class StateStore {
public:
    enum class Load { Ok, Missing, Error };
    virtual ~StateStore() = default;
    // Missing: there is no state yet (a new cluster). Error: *err says why; never overwrite.
    virtual Load load(State* out, std::string* err) = 0;
    // Durable when it returns true.
    virtual bool save(const State& s, std::string* err) = 0;
    // Where the state lives, for messages ("state file PATH").
    virtual std::string where() const = 0;
};

// JSON in one file, replaced atomically (temp file in the same directory, fsync, rename,
// fsync of the directory).
class FileStateStore : public StateStore {
public:
    explicit FileStateStore(std::string path) : path_(std::move(path)) {}
    Load load(State* out, std::string* err) override;
    bool save(const State& s, std::string* err) override;
    std::string where() const override { return "state file " + path_; }

    // The JSON text of a state, and back (exposed for tests).
    static std::string to_json(const State& s);
    static bool from_json(const std::string& text, State* out, std::string* err);

private:
    std::string path_;
};

}  // namespace mcm::coord
