// Who runs the coordinator in this process. With the file backend: one Coordinator for the
// process's life. With etcd: an Elector campaigns; while this process leads, a Coordinator
// built for that term runs on the state read from etcd; when the leadership ends (lease lost,
// fenced write, etcd unreachable) it is destroyed, and a later term builds a fresh one from
// etcd. Everything here runs on the loop thread, from a timer of its own, never from inside
// a Coordinator callback.
#pragma once

#include <event2/event.h>

#include <memory>
#include <string>

#include "coordinator/coordinator.h"
#include "coordinator/etcd/election.h"
#include "coordinator/options.h"

namespace mcm::coord {

namespace etcd {
class EtcdStateStore;
}

class Supervisor {
public:
    // admin_addr: the admin API's address as peers should reach it (etcd only).
    Supervisor(event_base* base, Options opts);
    ~Supervisor();
    Supervisor(const Supervisor&) = delete;
    Supervisor& operator=(const Supervisor&) = delete;

    // File backend: builds and sets up the coordinator (false: exit 1). Etcd: starts the
    // election (false on a bad URL).
    bool start(const std::string& admin_addr, std::string* err);
    // The coordinator while this process leads, else nullptr.
    Coordinator* leader() const;
    // nullptr with the file backend.
    const etcd::Elector* elector() const { return elector_.get(); }
    bool etcd() const { return elector_ != nullptr; }
    const Options& options() const { return opts_; }
    int exit_code() const;

private:
    static void check_cb(evutil_socket_t, short, void* arg);
    void check();
    void stand_down(const std::string& why);

    event_base* base_;
    Options opts_;
    std::unique_ptr<etcd::Elector> elector_;
    std::unique_ptr<Coordinator> coord_;
    etcd::EtcdStateStore* store_ = nullptr;  // owned by coord_
    uint64_t term_ = 0;                      // the term coord_ was built for
    event* check_ = nullptr;
    int exit_code_ = -1;
};

}  // namespace mcm::coord
