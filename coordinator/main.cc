// mc-coordinator: the composition root. Parses options, sets up the supervisor (the state
// backend, the election, the coordinator) and the admin API on one event loop, and runs it
// until SIGTERM/SIGINT.
#include <event2/event.h>
#include <signal.h>

#include <curl/curl.h>

#include <cstdio>
#include <memory>

#include "coordinator/admin.h"
#include "coordinator/coordinator.h"
#include "coordinator/log.h"
#include "coordinator/options.h"
#include "coordinator/state.h"
#include "coordinator/supervisor.h"
#include "coordinator/link.h"
#include "tls/peer.h"

using namespace mcm::coord;
namespace tls = mcm::tls;

namespace {

constexpr int kExitUsage = 64;

bool write_port_file(const std::string& path, uint16_t port) {
    std::string tmp = path + ".tmp";
    FILE* f = fopen(tmp.c_str(), "w");
    if (f == nullptr) return false;
    bool ok = fprintf(f, "%u\n", port) > 0;
    ok = fclose(f) == 0 && ok;
    return ok && rename(tmp.c_str(), path.c_str()) == 0;
}

void on_signal(evutil_socket_t sig, short, void* arg) {
    CLOG_INFO("signal %d: shutting down", static_cast<int>(sig));
    event_base_loopexit(static_cast<event_base*>(arg), nullptr);
}

int run(Options opts) {
    signal(SIGPIPE, SIG_IGN);
    event_base* base = event_base_new();
    if (base == nullptr) {
        CLOG_CRIT("cannot create the event loop");
        return 1;
    }
    int rc = 0;
    {
        Supervisor sup(base, opts);
        AdminApi admin(base, &sup, opts.secret);
        std::string err;
        event* sigterm = evsignal_new(base, SIGTERM, on_signal, base);
        event* sigint = evsignal_new(base, SIGINT, on_signal, base);
        event_add(sigterm, nullptr);
        event_add(sigint, nullptr);
        if (!admin.listen(opts.listen_host, opts.listen_port, &err)) {
            CLOG_CRIT("%s", err.c_str());
            rc = 1;
        } else if (!opts.port_file.empty() && !write_port_file(opts.port_file, admin.port())) {
            CLOG_CRIT("cannot write the port file %s", opts.port_file.c_str());
            rc = 1;
        } else if (!sup.start(opts.listen_host + ":" + std::to_string(admin.port()), &err)) {
            if (!err.empty()) CLOG_CRIT("%s", err.c_str());
            rc = 1;
        } else {
            CLOG_INFO("admin API on %s:%u; heartbeat %u ms, dead after %u ms, lease %u ms, "
                      "quiet %lld ms", opts.listen_host.c_str(), admin.port(), opts.heartbeat_ms,
                      opts.dead_after_ms, opts.lease_ms(),
                      static_cast<long long>(opts.quiet_ms()));
            event_base_dispatch(base);
            rc = sup.exit_code() >= 0 ? sup.exit_code() : 0;
        }
        event_free(sigterm);
        event_free(sigint);
    }
    event_base_free(base);
    return rc;
}

}  // namespace

int main(int argc, char** argv) {
    Options opts;
    std::string err;
    switch (parse_options(argc, argv, &opts, &err)) {
        case ParseResult::Help: fputs(usage().c_str(), stdout); return 0;
        case ParseResult::Error:
            fprintf(stderr, "mc-coordinator: %s\n", err.c_str());
            return kExitUsage;
        case ParseResult::Ok: break;
    }
    log_set_verbose(opts.verbose);
    std::unique_ptr<tls::PeerTls> peer_tls;
    if (!opts.peer_tls_cert.empty()) {
        peer_tls = tls::PeerTls::create(
            tls::PeerTlsConfig{opts.peer_tls_ca, opts.peer_tls_cert, opts.peer_tls_key}, &err);
        if (!peer_tls) {
            fprintf(stderr, "mc-coordinator: peer TLS: %s\n", err.c_str());
            return kExitUsage;
        }
        set_peer_tls(peer_tls.get());
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);  // before any thread (the etcd backend's)
    int rc = run(std::move(opts));
    curl_global_cleanup();
    set_peer_tls(nullptr);
    return rc;
}
