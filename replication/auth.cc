#include "replication/auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace mcm::repl {

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

std::string hmac_hex(std::string_view secret, std::string_view text) {
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
             reinterpret_cast<const unsigned char*>(text.data()), text.size(), mac,
             &len) == nullptr) {
        return {};
    }
    return hex(mac, len);
}

std::string random_hex(size_t nbytes) {
    unsigned char n[64];
    if (nbytes > sizeof(n) || RAND_bytes(n, static_cast<int>(nbytes)) != 1) return {};
    return hex(n, nbytes);
}

bool equal_ct(std::string_view a, std::string_view b) noexcept {
    return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

bool proof_ok(std::string_view secret, std::string_view text, std::string_view proof_hex) {
    if (text.empty()) return false;
    std::string want = hmac_hex(secret, text);
    return !want.empty() && equal_ct(want, proof_hex);
}

bool read_secret_file(const std::string& path, std::string* secret, std::string* err) {
    FILE* f = fopen(path.c_str(), "r");
    if (f == nullptr) {
        *err = "cannot read secret file " + path + ": " + strerror(errno);
        return false;
    }
    char buf[4096];
    size_t n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    std::string s(buf, n);
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
    if (s.size() < 16) {
        *err = "secret in " + path + " too short: at least 16 bytes";
        return false;
    }
    *secret = std::move(s);
    return true;
}

}  // namespace mcm::repl
