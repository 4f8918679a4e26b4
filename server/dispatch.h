// Request -> store calls -> reply bytes. No socket code: replies go into an OutBuf, and what
// the connection must do next (read a value, swallow bytes, close) comes back as a value.
// One Dispatcher per worker thread; it uses that worker's counters.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "proto/binary.h"
#include "proto/request.h"
#include "server/context.h"
#include "server/managed/forward.h"
#include "server/outbuf.h"
#include "server/stats.h"
#include "server/store/store.h"
#include <vector>

namespace mcm::server {

enum class Next : uint8_t {
    Continue,         // parse the next command
    ReadValue,        // a storage command: read the value into *item (value_len + 2 bytes)
    Swallow,          // discard *swallow bytes of value (the item could not be allocated)
    CloseAfterWrite,  // quit: send what is queued, then close
    CloseNow,         // shutdown: close without replying
    Forward,          // managed mode: pending->forward goes to another server; wait for it
};

// A storage command between its command line and its value.
struct PendingStore {
    proto::Cmd cmd = proto::Cmd::Set;  // for ms and binary: the text command it maps to
    // Whose value is being read: a text storage command, an ms (meta status reply), a binary
    // set (no "\r\n" on the wire), or `cluster setmap`'s map text (into blob, no item).
    enum class Kind : uint8_t { Text, Meta, Binary, ClusterMap };
    Kind kind = Kind::Text;
    bool noreply = false;
    uint8_t bin_opcode = 0;
    uint32_t bin_opaque = 0;
    uint32_t wire_len = 0;  // value bytes to read from the connection
    uint64_t cas_unique = 0;
    store::StoreExtra extra;   // ms: E and I
    std::string meta_tokens;   // ms: the flags, for the reply (O, k, c in request order)
    store::ItemRef item;
    std::string blob;  // Kind::ClusterMap
    char* dest() noexcept { return kind == Kind::ClusterMap ? blob.data() : item->value(); }

    // Managed mode: a request handed to another server (Next::Forward).
    std::unique_ptr<ForwardJob> forward;

    // Per-connection session state (this struct lives as long as the connection).
    std::string cluster_nonce;  // the challenge this connection was given
    bool cluster_auth = false;  // proved the cluster secret
    bool peer_tls = false;      // came over peer TLS with a certificate the cluster's CA signed
    bool cluster_peer = false;  // a peer's link: never forward what comes on it
    bool tls = false;           // the connection is TLS (Conn::start_tls): no socket handoff
    bool no_park = false;       // UDP: a request cannot wait parked (managed mode)
    bool switch_binary = false;  // `cluster peer binary`: the rest of the stream is binary
    // `cluster repl <node> <nonce>`: hand this socket to the replication thread.
    bool repl_handoff = false;
    std::string repl_node;
    std::string repl_nonce;
    // `watch`: hand this socket to the watch thread (server/watch.h) with these flags.
    bool watch_handoff = false;
    uint32_t watch_flags = 0;
    int cfd = -1;  // the connection's socket, for watch lines' cfd=
    // `cluster hb`: the token this connection's last heartbeat reply carried, and when it
    // was issued (CLOCK_MONOTONIC us): the next heartbeat's lease runs from then.
    uint64_t hb_token = 0;
    int64_t hb_issued_us = 0;
};

// Clears the store's bucket hint when a managed-mode request returns (it must not outlive the
// request's buffer).
struct HintScope {
    explicit HintScope(bool on) noexcept : on_(on) {}
    ~HintScope() {
        if (on_) store::bucket_hint = {};
    }
    HintScope(const HintScope&) = delete;
    HintScope& operator=(const HintScope&) = delete;
    bool on_;
};

// The store operation a text storage command (or its meta/binary equivalent) stands for.
store::StoreOp store_op(proto::Cmd c) noexcept;

class Dispatcher {
public:
    // The reply to a forwarded request, or its failure, as the client gets it.
    std::string finish_forward(const ForwardJob& job);

    // Managed mode, a parked request (its owner unreachable, or none in the map): route it
    // again with the map held now. Wait: still no owner (or its bucket is pending here for
    // a write); Send: job's target is set, submit it; Done: answered (here, or refused).
    enum class Reroute : uint8_t { Wait, Send, Done };
    Reroute reroute(ForwardJob* job);
    // A parked request's bound passed, or parking is off: the error it gets (job->error).
    void fail_parked(ForwardJob* job);

    Dispatcher(ServerContext& ctx, ThreadStats& stats) noexcept : ctx_(ctx), stats_(stats) {}

    // Operators' commands (server/operator_cmds.cc).
    void stats_cachedump(std::string_view args, OutBuf& out);
    void stats_sizes(std::string_view sub, OutBuf& out);
    void lru_crawler(const proto::Request& req, OutBuf& out);
    void metadump(const std::vector<bool>& want, OutBuf& out);
    void slabs(const proto::Request& req, OutBuf& out);
    Next watch(const proto::Request& req, OutBuf& out, PendingStore* pending);
    // watch lines; callers check watch::watching() first.
    void log_get(std::string_view key, const store::Item* it, store::MissReason reason);
    void log_store(proto::Cmd cmd, const store::Item* it, store::StoreStatus s);

    // Execute a parsed command. For a storage command fills *pending and returns ReadValue,
    // or returns Swallow with *swallow set when the item could not be allocated.
    Next execute(const proto::Request& req, OutBuf& out, PendingStore* pending, size_t* swallow);

    // The value of a storage command has arrived in pending->item (with its 2 trailing bytes).
    // Returns what the connection does next (binary errors may close it).
    void finish_store(PendingStore* pending, OutBuf& out);

    // A binary-protocol request whose header, extras and key are parsed.
    Next execute_binary(const proto::bin::BinRequest& req, OutBuf& out, PendingStore* pending,
                        size_t* swallow);

private:
    void get(const proto::Request& req, OutBuf& out, bool end = true);
    void meta_get(const proto::Request& req, OutBuf& out);
    Next meta_set(const proto::Request& req, OutBuf& out, PendingStore* pending, size_t* swallow);
    void finish_meta_store(PendingStore* pending, OutBuf& out);
    void meta_delete(const proto::Request& req, OutBuf& out);
    void meta_clear_value(const proto::Request& req, OutBuf& out);
    void meta_arith(const proto::Request& req, OutBuf& out);
    void meta_debug(const proto::Request& req, OutBuf& out);
    void finish_binary_store(PendingStore* pending, OutBuf& out);
    void binary_get(const proto::bin::BinRequest& req, uint8_t cmd, bool quiet, OutBuf& out);
    void binary_arith(const proto::bin::BinRequest& req, uint8_t cmd, bool quiet, OutBuf& out);
    Next binary_update(const proto::bin::BinRequest& req, uint8_t cmd, bool quiet, OutBuf& out,
                       PendingStore* pending, size_t* swallow);
    void binary_stat(const proto::bin::BinRequest& req, OutBuf& out);
    void arith(const proto::Request& req, OutBuf& out);
    void stats(const proto::Request& req, OutBuf& out);
    Next cluster(const proto::Request& req, OutBuf& out, PendingStore* pending, size_t* swallow);
    void finish_cluster_map(PendingStore* pending, OutBuf& out);
    void begin_handoff(uint32_t b, uint64_t epoch, OutBuf& out);
    void write_bucket_dump(uint32_t bucket, OutBuf& out);
    void write_heartbeat(uint32_t lease_ms, uint64_t token, uint32_t quiet_ms, bool full,
                         PendingStore* p, OutBuf& out);
    // Wait: a write for a bucket pending here, on a connection that can park it.
    enum class Where : uint8_t { Local, Remote, Refuse, Wait };
    Where where(uint32_t bucket, bool write, const PendingStore* p);
    std::string not_my_bucket(uint32_t bucket);
    void refuse_text(const proto::Request& req, OutBuf& out, uint32_t bucket);
    // Managed mode: false when the request was answered or handed over (*next says how).
    bool route_text(const proto::Request& req, OutBuf& out, PendingStore* p, size_t* swallow,
                    Next* next);
    bool route_binary(const proto::bin::BinRequest& r, OutBuf& out, PendingStore* p,
                      size_t* swallow, Next* next);
    // pending: the request waits (parked) for its bucket, pending here, to become active.
    Next forward_text(const proto::Request& req, OutBuf& out, PendingStore* p, size_t* swallow,
                      bool pending = false);
    Next forward_binary(const proto::bin::BinRequest& r, OutBuf& out, PendingStore* p,
                        size_t* swallow, bool pending = false);
    void debug(const proto::Request& req, OutBuf& out);
    void reply(const proto::Request& req, OutBuf& out, std::string_view line);
    void count_cas(store::StoreOp op, store::StoreStatus s) noexcept;  // cas_hits/badval/misses
    // The item a storage command (text, meta or binary) reads its value into. On failure the
    // failure is counted (store_too_large / store_no_memory) and, with drop_old, the key's
    // old value removed, as memcached does; the caller sends its protocol's error.
    // memcached's text for a failed allocation (TooLarge, or NoMemory as oom_during_read
    // tells).
    store::AllocStatus alloc_for_store(std::string_view key, uint32_t flags, store::RelTime exp,
                                       uint32_t len, bool drop_old, store::ItemRef* item);
    // memcached keeps an item above slab_chunk_max in chunks it takes one by one while the
    // value arrives: when memory runs out there, it answers "Out of memory during read" and
    // leaves the key's old value in place. True when that is memcached's answer for a store
    // of this size refused for memory.
    bool oom_during_read(std::string_view key, uint32_t flags, uint32_t len) const noexcept;
    std::string_view store_error_text(store::AllocStatus rc, std::string_view key, uint32_t flags,
                                      uint32_t len) const noexcept;

    ServerContext& ctx_;
    ThreadStats& stats_;
    int cur_fd_ = -1;  // the socket of the request being executed (watch lines' cfd)
};

// Store::Config::on_evict for `watch evictions` (server/operator_cmds.cc).
void log_eviction(const store::Item& it, unsigned cls, store::RelTime now) noexcept;

}  // namespace mcm::server
