#include "replication/auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

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

}  // namespace mcm::repl
