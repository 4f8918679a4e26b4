// libFuzzer target: meta command lines. The first byte picks the command (mg ms md ma me mn
// or a wrong one) so the fuzzer spends its time in the flag grammar; the rest is the line.
// Checks: decoded base64 keys fit the key buffer and survive a round trip, the flag
// tokens lie inside the line, errors that discard a value say how much.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "proto/base64.h"
#include "proto/text_parser.h"

using namespace mcm::proto;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    static const char* const kCmds[] = {"mg ", "ms ", "md ", "ma ", "me ", "mn ", "mx ", "m "};
    std::string line = kCmds[data[0] % 8];
    line.append(reinterpret_cast<const char*>(data + 1), size - 1);
    if (line.find('\n') == std::string::npos) line += "\r\n";
    Request r;
    size_t used = 0;
    if (parse_command(line, &r, &used) != ParseStatus::Ok) return 0;
    if (used == 0 || used > line.size()) std::abort();
    const bool meta = r.cmd >= Cmd::MetaGet && r.cmd <= Cmd::MetaDebug;
    if (meta && r.cmd != Cmd::MetaNoop) {
        if (r.key.size() > kKeyBufSize) std::abort();
        if (r.meta.has('b')) {
            // The key was decoded into key_buf; encoding it and decoding again gives it back
            // (the text sent may be a non-canonical spelling of the same bytes).
            if (r.key.data() != r.key_buf || r.key.empty()) std::abort();
            std::string enc(base64_encoded_size(r.key.size()), '\0');
            enc.resize(base64_encode(r.key, enc.data()));
            std::string back(enc.size(), '\0');
            back.resize(base64_decode(enc, back.data()));
            if (back != r.key) std::abort();
        }
        if (!r.meta.tokens.empty() &&
            (r.meta.tokens.data() < line.data() ||
             r.meta.tokens.data() + r.meta.tokens.size() > line.data() + line.size())) {
            std::abort();
        }
        KeyCursor kc(r.meta.tokens);
        std::string_view tok;
        while (kc.next(&tok)) {
            if (tok.empty()) std::abort();
        }
    }
    if (r.cmd == Cmd::Error && r.swallow != 0 && r.swallow < 2) std::abort();
    // Copies keep their key.
    Request copy = r;
    if (copy.key != r.key) std::abort();
    return 0;
}
