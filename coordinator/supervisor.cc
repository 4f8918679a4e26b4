#include "coordinator/supervisor.h"

#include "coordinator/clock.h"
#include "coordinator/etcd/store.h"
#include "coordinator/log.h"

namespace mcm::coord {

namespace {
constexpr int64_t kCheckMs = 10;  // how soon a won or lost leadership is acted on
}

Supervisor::Supervisor(event_base* base, Options opts) : base_(base), opts_(std::move(opts)) {}

Supervisor::~Supervisor() {
    if (check_ != nullptr) event_free(check_);
    coord_.reset();  // before the elector: its links read the leadership
    if (elector_) elector_->stop();
}

bool Supervisor::start(const std::string& admin_addr, std::string* err) {
    if (!etcd::is_etcd_url(opts_.state_path)) {
        coord_ = std::make_unique<Coordinator>(
            base_, opts_, std::make_unique<FileStateStore>(opts_.state_path));
        if (!coord_->setup()) {
            *err = "";
            return false;
        }
        return true;
    }
    etcd::ElectionConfig c;
    if (!etcd::parse_url(opts_.state_path, &c.url, err)) return false;
    c.url.tls = etcd::TlsFiles{opts_.etcd_cacert, opts_.etcd_cert, opts_.etcd_key};
    c.admin = opts_.advertise.empty() ? admin_addr : opts_.advertise;
    c.id = opts_.id;
    if (c.id.empty()) {
        c.id = c.admin;
        for (char& ch : c.id) {
            if (ch == ':') ch = '-';
        }
    }
    c.ttl_s = opts_.etcd_lease_ttl_s;
    CLOG_INFO("coordinator %s (admin %s): state in etcd %s under %s, lease TTL %lld s",
              c.id.c_str(), c.admin.c_str(), opts_.state_path.c_str(), c.url.prefix.c_str(),
              static_cast<long long>(c.ttl_s));
    elector_ = std::make_unique<etcd::Elector>(std::move(c));
    elector_->start();
    check_ = event_new(base_, -1, EV_PERSIST, check_cb, this);
    timeval tv{0, static_cast<suseconds_t>(kCheckMs * 1000)};
    event_add(check_, &tv);
    return true;
}

Coordinator* Supervisor::leader() const {
    if (!coord_) return nullptr;
    if (elector_ && !elector_->leading(mono_ms())) return nullptr;
    return coord_.get();
}

int Supervisor::exit_code() const {
    if (exit_code_ >= 0) return exit_code_;
    return coord_ ? coord_->exit_code() : -1;
}

void Supervisor::check_cb(evutil_socket_t, short, void* arg) {
    static_cast<Supervisor*>(arg)->check();
}

void Supervisor::stand_down(const std::string& why) {
    if (!coord_) return;
    CLOG_CRIT("standing down: %s; the map is left to the next leader", why.c_str());
    store_ = nullptr;
    coord_.reset();  // closes every server link: servers hear nothing more from this process
}

void Supervisor::check() {
    const int64_t now = mono_ms();
    elector_->alive(now);
    if (coord_ && store_ != nullptr && store_->fenced()) {
        elector_->resign("a state write was fenced");
        stand_down("a state write was fenced by etcd");
    }
    const bool leading = elector_->leading(now);
    if (coord_ && (!leading || elector_->term() != term_)) {
        stand_down(leading ? "the leadership changed hands" : "the leadership is lost");
    }
    if (coord_ || !leading) return;
    const int64_t lease = elector_->lease();
    if (lease == 0) return;
    term_ = elector_->term();
    auto store =
        std::make_unique<etcd::EtcdStateStore>(elector_->config().url, elector_.get(), lease);
    store_ = store.get();
    CLOG_INFO("leading (term %llu): loading the state from etcd",
              static_cast<unsigned long long>(term_));
    coord_ = std::make_unique<Coordinator>(base_, opts_, std::move(store), elector_.get());
    if (!coord_->setup()) {
        // The state cannot be used (another cluster's, corrupt, or no state and no --node):
        // as with a state file, the process exits rather than lead on something wrong. An
        // etcd that does not answer is not that: hand over and try again later.
        if (!elector_->leading(mono_ms()) || store_->fenced() || store_->unreachable()) {
            elector_->resign("cannot read the state from etcd");
            store_ = nullptr;
            coord_.reset();
            return;
        }
        exit_code_ = 1;
        store_ = nullptr;
        coord_.reset();
        event_base_loopexit(base_, nullptr);
    }
}

}  // namespace mcm::coord
