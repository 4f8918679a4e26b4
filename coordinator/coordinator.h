// The coordinator's core: membership, the map and its epoch, health, and the decisions
// (failover, rejoin, replica restore and trim) made on each tick (a quarter heartbeat).
// Owns the Server records and their links. Everything runs on one libevent loop thread; the
// admin API (admin.cc) calls in from the same loop.
#pragma once

#include <event2/event.h>
#include <sys/types.h>

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "coordinator/leadership.h"
#include "coordinator/mover.h"
#include "coordinator/options.h"
#include "coordinator/planner.h"
#include "coordinator/server.h"
#include "coordinator/state.h"

namespace mcm::coord {

struct FailoverRecord {
    std::string node;
    int64_t at_unix_ms = 0;
    int64_t detect_ms = 0;  // last answer -> declared dead
    int64_t push_ms = -1;   // declared dead -> every live server said OK (-1: not yet)
    uint32_t buckets = 0;
    uint32_t cold = 0;
    bool refused = false;   // decided on a refused connection (proof), not on silence
};

// An address takeover (doc/coordinator.md): `holder` answers on dead `node`'s address until
// `node` is back in sync, through a `cluster listen` on the holder or the operator's hook.
struct Takeover {
    enum class St { Acquiring, Held, Releasing };
    uint64_t id = 0;
    std::string node, host, holder;
    uint16_t port = 0;
    bool hook = false;
    St st = St::Acquiring;
    bool in_flight = false;      // a command or hook run is under way
    bool release_wanted = false;  // the node came back while acquiring
    bool standby = false;         // the node is alive: the holder listens behind it
    bool steered = false;         // standby: the node's own listeners steer to themselves
    pid_t pid = -1;               // the hook being run
    int64_t deadline_ms = 0;      // ... killed after this
    int64_t since_unix_ms = 0;
    std::string addr() const { return host + ":" + std::to_string(port); }
};

// Counters for /status and /metrics.
struct Counters {
    uint64_t failovers = 0;
    uint64_t heartbeats = 0;
    uint64_t cold_buckets = 0;
    uint64_t maps_pushed = 0;
    uint64_t push_errors = 0;
    uint64_t refused_failovers = 0;  // failovers decided on a refused connection
    uint64_t takeovers = 0;          // addresses taken over (acquired)
    uint64_t takeover_releases = 0;
    uint64_t takeover_errors = 0;    // listen/unlisten refused, hook failed or timed out
    // Heartbeat round trips: a histogram with these upper bounds (seconds), then the sum.
    static constexpr std::array<double, 10> kRttBounds = {0.0005, 0.001, 0.0025, 0.005, 0.01,
                                                         0.025,  0.05,  0.1,    0.25,  1.0};
    std::array<uint64_t, 11> rtt_buckets{};  // the last one: +Inf
    double rtt_sum_s = 0;
    uint64_t rtt_count = 0;
    void observe_rtt(double s);
};

class Coordinator {
public:
    // lead: whether this process may act (nullptr: always, the file backend). When it turns
    // false the coordinator stops deciding, writing and talking to servers at once; its owner
    // (coordinator/supervisor.h) then destroys it.
    Coordinator(event_base* base, Options opts, std::unique_ptr<StateStore> store,
                const Leadership* lead = nullptr);
    ~Coordinator();

    // Loads the state (or prepares a first start) and starts the links and the tick. False
    // (with the reason logged) when the process must exit 1.
    bool setup();
    // Set when the coordinator must stop with this exit code (e.g. a first start that timed out).
    int exit_code() const { return exit_code_; }

    // Admin API operations. http is 200 on success, else 400/404/409 with error.
    struct Outcome {
        int http = 200;
        std::string error;
    };
    Outcome add_node(const std::string& name, const std::string& addr, bool rebalance = false);
    // Planned moves (mover.cc): toward the even map plan_balance() gives, `parallel` buckets
    // at a time. drain_node: the node is given nothing in that map (remove: it then leaves).
    Outcome start_rebalance(uint32_t parallel, const std::string& why, uint32_t* planned);
    Outcome cancel_rebalance();
    Outcome drain_node(const std::string& name, bool remove, uint32_t* planned);
    const Rebalance& rebalance() const { return reb_; }
    const std::vector<Move>& moves() const { return moves_; }
    Outcome remove_node(const std::string& name);
    Outcome failover_node(const std::string& name);

    // Read-only views for admin.cc and metrics.cc.
    const BucketMap& map() const { return map_; }
    const Options& options() const { return opts_; }
    const std::vector<std::unique_ptr<Server>>& servers() const { return servers_; }
    const Counters& counters() const { return counters_; }
    const FailoverRecord& last_failover() const { return last_failover_; }
    bool cut_off() const { return cut_off_; }
    int64_t start_ms() const { return start_ms_; }
    // Max replication lag (records) of s's replica buckets, from the actives' reports.
    uint64_t max_lag(const Server& s) const;
    const std::vector<Takeover>& takeovers() const { return takeovers_; }
    static const char* takeover_state(Takeover::St st);

private:
    enum class Mode { FirstStart, Running };
    static constexpr int64_t kGraceMs = 400;
    // How old a server's report of its silence can be when a peer reads it (pings every
    // 25 ms, plus delivery): the grace counts a renewal gap as contact only below
    // quiet_ms - this.
    static constexpr int64_t kReportAgeMs = 50;
    static constexpr int64_t kFirstStartWaitMs = 5000;

    bool load_state(const State& st);
    void prepare_first_start();
    Server* add_server(const std::string& name, const std::string& host, uint16_t port);
    Server* find(const std::string& name) const;

    static void tick_cb(evutil_socket_t, short, void* arg);
    void tick();
    void first_start_tick(int64_t now);
    void send_heartbeats(int64_t now);
    bool may_lease(const Server& s) const;
    void renew_lease(Server* s);
    void on_heartbeat(Server* s, uint64_t seq, int64_t sent_us,
                      const std::vector<std::string>& lines);
    void check_identity(Server* s, const HbReply& h);
    void reconcile_epoch(Server* s);

    // Decisions.
    void decide(int64_t now);
    bool update_cut_off(int64_t now);
    bool grace_ok(int64_t now) const;
    void declare_dead(Server* s, int64_t now, const std::string& why, bool close_link,
                      Server* extra_target = nullptr);
    void start_rejoin(Server* s);
    // Proof of death: the link closed and the server's own address refuses connections.
    void on_link_down(Server* s, bool peer_closed);
    void probe_gone(const std::string& name, int attempt);
    bool drained(const Server& dead, int64_t now) const;
    void decide_soon();
    static void decide_soon_cb(evutil_socket_t, short, void* arg);
    // Address takeover.
    bool takeover_wanted(const Server& s) const;
    bool address_taken(const Server& s) const;
    Server* pick_holder(const Server& dead, const BucketMap& before) const;
    void begin_takeover(Server* dead, const BucketMap& before);
    void holder_lost(Server* holder);
    void release_takeovers(const std::string& node);
    void run_takeovers(int64_t now);
    void arm_standbys();
    void takeover_step(Takeover* t, int64_t now);
    void takeover_done(uint64_t id, bool ok, const std::string& what);
    Takeover* find_takeover(uint64_t id);
    bool spawn_hook(Takeover* t, const char* op);
    void finish_rejoin(Server* s);
    void maintain_replicas();
    // The mover (mover.cc).
    void rebalance_step(int64_t now);
    std::vector<bool> eligible() const;
    void move_step(Move* m, int64_t now, BucketMap* batch);
    void send_handoff(uint64_t id);
    void poll_applied(uint64_t id);
    static void poll_cb(evutil_socket_t, short, void* arg);
    void end_move(uint64_t id, bool ok, const std::string& why);
    Move* find_move(uint64_t id);
    void cancel_handoff(Server* old_active, uint32_t b);
    const BucketMap& target_for(const std::vector<bool>& eligible);
    bool moving(uint32_t b) const;
    void cancel_stale_handoffs(Server* s);
    void finish_rebalance(Rebalance::St st, const std::string& why);
    void retire_drained();
    void check_caught_up(Server* s);

    // The map.
    View view() const;
    View failover_view(const Server& dead) const;
    bool commit(BucketMap next, const std::string& why, Server* extra_target = nullptr,
                bool failover = false);
    bool save_state();
    void push(Server* s, bool failover_round);
    void fetch_map(Server* s);
    void adopt_map(const BucketMap& m, const std::string& from);

    bool may_act(int64_t now) const { return lead_ == nullptr || lead_->leading(now); }

    event_base* base_;
    Options opts_;
    const Leadership* lead_;
    // Callbacks scheduled with event_base_once hold a weak reference: a coordinator destroyed
    // on losing the leadership leaves them nothing to call.
    std::shared_ptr<int> life_ = std::make_shared<int>(0);
    std::unique_ptr<StateStore> store_;
    State state_;
    BucketMap map_;
    std::vector<std::unique_ptr<Server>> servers_;
    // Records removed by the admin API while a callback of theirs may be on the stack: freed
    // at the next tick.
    std::vector<std::unique_ptr<Server>> graveyard_;
    Mode mode_ = Mode::Running;
    event* tick_ = nullptr;
    int64_t next_beat_ms_ = 0;
    int64_t start_ms_ = 0;
    int exit_code_ = -1;
    bool cut_off_ = false;
    bool state_dirty_ = false;  // boot ids changed: save without a map change
    Counters counters_;
    FailoverRecord last_failover_;
    uint32_t failover_push_left_ = 0;  // servers still to confirm the last failover map
    uint64_t failover_epoch_ = 0;      // the epoch of that map
    int64_t failover_declared_ms_ = 0;
    std::vector<Takeover> takeovers_;
    uint64_t next_takeover_id_ = 1;
    event* decide_soon_ = nullptr;
    std::string restore_after_;  // a failover's replica restore is due (the dead server)
    Rebalance reb_;
    std::vector<Move> moves_;
    uint64_t next_move_id_ = 1;
    std::vector<uint32_t> moved_;  // buckets moved in this rebalance (each once at most)
    std::map<uint32_t, uint32_t> attempts_;  // moves given up, per bucket
    BucketMap target_;                       // plan_balance's last answer (target_for)
    std::vector<bool> target_eligible_;
    uint64_t target_failovers_ = 0;
};

}  // namespace mcm::coord
