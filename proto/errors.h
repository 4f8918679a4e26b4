// The exact wire text of every error the text protocol sends, in one table.
#pragma once

#include <string_view>

#include "proto/request.h"

namespace mcm::proto {

inline constexpr std::string_view kKeyTooLongOrBad = "CLIENT_ERROR bad command line format\r\n";
inline constexpr std::string_view kTooLarge = "SERVER_ERROR object too large for cache\r\n";
inline constexpr std::string_view kOutOfMemoryStoring =
    "SERVER_ERROR out of memory storing object\r\n";
// memcached's answer when an item above slab_chunk_max cannot get its next chunk.
inline constexpr std::string_view kOutOfMemoryDuringRead =
    "SERVER_ERROR Out of memory during read\r\n";
inline constexpr std::string_view kOutOfMemory = "SERVER_ERROR out of memory\r\n";
inline constexpr std::string_view kBadDataChunk = "CLIENT_ERROR bad data chunk\r\n";
inline constexpr std::string_view kNonNumeric =
    "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n";
inline constexpr std::string_view kShutdownDisabled = "ERROR: shutdown not enabled\r\n";
inline constexpr std::string_view kFlushDisabled = "CLIENT_ERROR flush_all not allowed\r\n";
inline constexpr std::string_view kMemlimitTooSmall =
    "MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m\r\n";
inline constexpr std::string_view kMemlimitNotBytes =
    "MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes\r\n";
inline constexpr std::string_view kTooManyConns = "ERROR Too many open connections\r\n";

constexpr std::string_view error_text(Err e) noexcept {
    switch (e) {
        case Err::None: return "";
        case Err::Error: return "ERROR\r\n";
        case Err::BadFormat: return "CLIENT_ERROR bad command line format\r\n";
        case Err::BadDeleteFormat:
            return "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n";
        case Err::InvalidExptime: return "CLIENT_ERROR invalid exptime argument\r\n";
        case Err::InvalidDelta: return "CLIENT_ERROR invalid numeric delta argument\r\n";
        case Err::BadCommandLine: return "CLIENT_ERROR bad command line\r\n";
        case Err::StatsDetailUsage: return "CLIENT_ERROR usage: stats detail on|off|dump\r\n";
        case Err::InvalidShutdownMode: return "CLIENT_ERROR invalid shutdown mode\r\n";
        case Err::InvalidFlag: return "CLIENT_ERROR invalid flag\r\n";
        case Err::DuplicateFlag: return "CLIENT_ERROR duplicate flag\r\n";
        case Err::InvalidOrDuplicateFlag: return "CLIENT_ERROR invalid or duplicate flag\r\n";
        case Err::BadToken: return "CLIENT_ERROR bad token in command line format\r\n";
        case Err::DecodingKey: return "CLIENT_ERROR error decoding key\r\n";
        case Err::FlagsAreTooLong: return "CLIENT_ERROR options flags are too long\r\n";
        case Err::FlagsTooLong: return "CLIENT_ERROR options flags too long\r\n";
        case Err::OpaqueTooLong: return "CLIENT_ERROR opaque token too long\r\n";
        case Err::MTokenLength: return "CLIENT_ERROR incorrect length for M token\r\n";
        case Err::InvalidMsMode: return "CLIENT_ERROR invalid mode for ms M token\r\n";
        case Err::InvalidMaMode: return "CLIENT_ERROR invalid mode for ma M token\r\n";
        case Err::InvalidInitial: return "CLIENT_ERROR invalid numeric initial value\r\n";
        case Err::InvalidDeltaValue: return "CLIENT_ERROR invalid numeric delta value\r\n";
    }
    return "ERROR\r\n";
}

}  // namespace mcm::proto
