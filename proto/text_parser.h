// Incremental parser for memcached's text protocol command lines. Bytes in, a Request out: no
// sockets, no clocks, no allocation. Values are not parsed here: for a storage command the
// caller reads Request::value_len bytes plus "\r\n" after the line, straight into the item.
#pragma once

#include <cstddef>
#include <string_view>

#include "proto/request.h"

namespace mcm::proto {

enum class ParseStatus : uint8_t {
    Ok,        // *req holds a command (or Cmd::Error with an error reply); *consumed bytes used
    NeedMore,  // no complete line yet; call again with more bytes
    Close,     // the peer must be disconnected (endless line, HTTP request), as memcached does
};

// memcached closes a connection whose first 2048 bytes hold no newline, unless the line is a
// get/gets (multi-gets may be arbitrarily long).
inline constexpr size_t kMaxLineWithoutNewline = 2048;
inline constexpr size_t kKeyMaxLength = 250;

// Parse one command line from the start of in into a default-constructed *req (fields the
// command does not use keep their defaults). The Request's views point into in.
[[nodiscard]] ParseStatus parse_command(std::string_view in, Request* req,
                                        size_t* consumed) noexcept;

}  // namespace mcm::proto
