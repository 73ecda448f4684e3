#pragma once

#include <string>
#include <vector>

namespace loads::common {

// The options of a Prometheus endpoint (prometheus::Exposer, CivetWeb underneath) on `address`
// ("127.0.0.1:9464"): enough threads, and a short request timeout, so that a few clients that
// send half a request cannot keep /metrics from Prometheus for long.
inline std::vector<std::string> ExposerOptions(const std::string& address) {
  return {"listening_ports", address, "num_threads", "8", "request_timeout_ms", "2000"};
}

}  // namespace loads::common
