// libFuzzer target: the binary protocol's header parser on arbitrary bytes, one request
// after another as a connection reads them. Checks: a parsed request's extras and key lie
// inside the input and match the header's lengths, and the value length never exceeds the
// body.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "proto/binary.h"

using namespace mcm::proto;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view in(reinterpret_cast<const char*>(data), size);
    for (int n = 0; !in.empty() && n < 10000; ++n) {
        bin::BinRequest r;
        size_t used = 0;
        if (bin::parse_binary(in, &r, &used) != ParseStatus::Ok) break;
        if (used != bin::kHeaderLen + r.extlen + r.keylen || used > in.size()) std::abort();
        if (r.key.size() != r.keylen || r.ext.size() > bin::kMaxExtLen) std::abort();
        if (r.key.data() + r.key.size() > in.data() + in.size()) std::abort();
        if (r.value_len() > r.bodylen) std::abort();
        size_t skip = used + r.value_len();
        in.remove_prefix(skip < in.size() ? skip : in.size());
    }
    return 0;
}
