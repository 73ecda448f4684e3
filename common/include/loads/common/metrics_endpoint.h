#pragma once

#include <memory>
#include <string>

namespace prometheus {
class Registry;
}

namespace loads::common {

// Serves a Prometheus registry at /metrics on `address` ("HOST:PORT", port 0: any). Without a
// token, through prometheus-cpp's exposer. With one, only to requests carrying
// `Authorization: Bearer TOKEN` (Prometheus' `authorization` with `credentials_file`), which the
// exposer cannot check (it knows basic authentication only): then the registry is served through
// CivetWeb directly, others get 401 with `WWW-Authenticate: Bearer`. Either way with
// ExposerOptions' threads and request timeout.
//
// Thread safety: the registry is read from the endpoint's threads; prometheus-cpp's metrics are
// safe to update meanwhile.
class MetricsEndpoint {
 public:
  // Throws std::runtime_error naming the address when it cannot listen there.
  MetricsEndpoint(const std::string& address, std::shared_ptr<prometheus::Registry> registry,
                  std::string token);
  ~MetricsEndpoint();
  MetricsEndpoint(const MetricsEndpoint&) = delete;
  MetricsEndpoint& operator=(const MetricsEndpoint&) = delete;

  // The port it listens on.
  int port() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace loads::common
