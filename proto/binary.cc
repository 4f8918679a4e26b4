#include "proto/binary.h"

#include <cstring>

namespace mcm::proto::bin {

ParseStatus parse_binary(std::string_view in, BinRequest* req, size_t* consumed) noexcept {
    if (in.empty()) return ParseStatus::NeedMore;
    if (static_cast<uint8_t>(in[0]) != kReqMagic) return ParseStatus::Close;
    if (in.size() < kHeaderLen) return ParseStatus::NeedMore;
    const char* p = in.data();
    req->opcode = static_cast<uint8_t>(p[1]);
    req->keylen = static_cast<uint16_t>((static_cast<uint8_t>(p[2]) << 8) |
                                        static_cast<uint8_t>(p[3]));
    req->extlen = static_cast<uint8_t>(p[4]);
    req->bodylen = load_be32(p + 8);
    std::memcpy(&req->opaque, p + 12, 4);
    req->cas = load_be64(p + 16);
    size_t need = kHeaderLen + req->extlen + req->keylen;
    if (in.size() < need) return ParseStatus::NeedMore;
    req->ext = std::string_view(p + kHeaderLen, req->extlen < kMaxExtLen ? req->extlen : kMaxExtLen);
    req->key = std::string_view(p + kHeaderLen + req->extlen, req->keylen);
    *consumed = need;
    req->raw = in.substr(0, need);
    return ParseStatus::Ok;
}

}  // namespace mcm::proto::bin
