// The coordinator's /status JSON and /metrics text, rendered from its read-only views. No
// decisions, no sockets.
#pragma once

#include <string>

#include "coordinator/coordinator.h"

namespace mcm::coord {

std::string status_json(const Coordinator& c);
std::string map_json(const Coordinator& c);
std::string metrics_text(const Coordinator& c);

}  // namespace mcm::coord
