// What the admin API says about the control plane itself (doc/coordinator.md, "State in
// etcd"): which coordinator leads, the others, etcd's health, and what a follower answers
// for reads. Rendering only: the data comes from the Supervisor and its Elector.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "coordinator/supervisor.h"

namespace mcm::coord {

// The "control_plane" object of GET /status (both backends).
nlohmann::json control_plane_json(const Supervisor& sup);
// GET /status of a follower: the control plane, and the cluster as stored in etcd (epoch,
// buckets, replicas, members); server health is the leader's to tell.
std::string follower_status_json(const Supervisor& sup);
// GET /map of a follower, read from etcd. False with *err when etcd does not answer.
bool follower_map_json(const Supervisor& sup, std::string* out, std::string* err);
// Lines appended to /metrics (both backends).
std::string control_plane_metrics(const Supervisor& sup);

}  // namespace mcm::coord
