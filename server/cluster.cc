#include "server/cluster.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

namespace mcm::server {

namespace {

std::string hex(const unsigned char* p, size_t n) {
    static const char kDigits[] = "0123456789abcdef";
    std::string s(n * 2, '0');
    for (size_t i = 0; i < n; ++i) {
        s[2 * i] = kDigits[p[i] >> 4];
        s[2 * i + 1] = kDigits[p[i] & 15];
    }
    return s;
}

}  // namespace

Cluster::Cluster(const Settings& s)
    : node_id_(s.node_id), secret_(s.cluster_secret), nbuckets_(s.buckets),
      states_(new std::atomic<uint8_t>[s.buckets]()) {}

Cluster::Install Cluster::install(const repl::BucketMap& m, std::string* err) {
    if (m.nbuckets != nbuckets_) {
        *err = "the map has " + std::to_string(m.nbuckets) + " buckets, this server " +
               std::to_string(nbuckets_);
        maps_refused.fetch_add(1, std::memory_order_relaxed);
        return Install::Invalid;
    }
    std::lock_guard<std::mutex> g(mu_);
    uint64_t held = epoch_.load(std::memory_order_relaxed);
    const repl::BucketMap* cur = map_.load(std::memory_order_relaxed);
    bool same = cur != nullptr && m.epoch == held && cur->format() == m.format();
    if (same) return Install::Ok;  // the same map again: nothing changes
    if (m.epoch < held || (m.epoch == held && cur != nullptr)) {
        *err = "epoch " + std::to_string(m.epoch) + " is not newer than " + std::to_string(held);
        maps_refused.fetch_add(1, std::memory_order_relaxed);
        return Install::Stale;
    }
    int self = m.node_index(node_id_);
    for (uint32_t b = 0; b < nbuckets_; ++b) {
        repl::BucketState s = repl::BucketState::Dead;
        if (self >= 0 && m.active[b] == self) {
            s = repl::BucketState::Active;
        } else if (self >= 0) {
            for (uint16_t r : m.replicas[b]) {
                if (r == self) s = repl::BucketState::Replica;
            }
        }
        states_[b].store(static_cast<uint8_t>(s), std::memory_order_relaxed);
    }
    maps_.push_back(std::make_unique<repl::BucketMap>(m));
    map_.store(maps_.back().get(), std::memory_order_release);
    epoch_.store(m.epoch, std::memory_order_release);
    maps_installed.fetch_add(1, std::memory_order_relaxed);
    return Install::Ok;
}

void Cluster::set_states(uint32_t first, uint32_t last, repl::BucketState s) noexcept {
    for (uint32_t b = first; b <= last && b < nbuckets_; ++b) {
        states_[b].store(static_cast<uint8_t>(s), std::memory_order_relaxed);
    }
}

void Cluster::reset() noexcept {
    std::lock_guard<std::mutex> g(mu_);
    set_states(0, nbuckets_ - 1, repl::BucketState::Dead);
    map_.store(nullptr, std::memory_order_release);
}

std::string Cluster::new_nonce() const {
    unsigned char n[32];
    if (RAND_bytes(n, sizeof(n)) != 1) return {};
    return hex(n, sizeof(n));
}

std::string Cluster::proof(const std::string& secret, std::string_view challenge) {
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
             reinterpret_cast<const unsigned char*>(challenge.data()), challenge.size(), mac,
             &len) == nullptr) {
        return {};
    }
    return hex(mac, len);
}

bool Cluster::verify(std::string_view nonce, std::string_view proof_hex) const {
    if (nonce.empty()) return false;
    std::string want = proof(secret_, nonce);
    return !want.empty() && proof_hex.size() == want.size() &&
           CRYPTO_memcmp(want.data(), proof_hex.data(), want.size()) == 0;
}

}  // namespace mcm::server
