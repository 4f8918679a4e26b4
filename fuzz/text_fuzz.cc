// libFuzzer target: the text command parser on arbitrary bytes, as a connection would feed
// it (one command after another from the same buffer). Checks the parser's contract: it
// consumes at least one byte and never more than it was given, its views stay inside the
// input, and key iteration terminates.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "proto/text_parser.h"

using namespace mcm::proto;

namespace {

bool inside(std::string_view v, std::string_view in) {
    return v.empty() || (v.data() >= in.data() && v.data() + v.size() <= in.data() + in.size());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view in(reinterpret_cast<const char*>(data), size);
    for (int n = 0; !in.empty() && n < 10000; ++n) {
        Request r;
        size_t used = 0;
        ParseStatus s = parse_command(in, &r, &used);
        if (s != ParseStatus::Ok) break;
        if (used == 0 || used > in.size()) std::abort();
        if (!inside(r.keys, in) || !inside(r.args, in)) std::abort();
        if (r.cmd < Cmd::MetaGet && !inside(r.key, in)) std::abort();
        KeyCursor kc(r.keys);
        std::string_view k;
        size_t keys = 0;
        while (kc.next(&k)) {
            if (k.empty() || ++keys > in.size()) std::abort();
        }
        // A storage command's value follows the line; skip it as the connection would.
        size_t skip = used;
        if (r.cmd != Cmd::Error && (cmd_flags(r.cmd) & kStore)) {
            skip += static_cast<size_t>(r.value_len) + 2;
        } else if (r.cmd == Cmd::Error && r.swallow != 0) {
            skip += r.swallow;
        }
        in.remove_prefix(skip < in.size() ? skip : in.size());
    }
    return 0;
}
