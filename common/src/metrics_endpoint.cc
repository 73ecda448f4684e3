#include "loads/common/metrics_endpoint.h"

#include <civetweb.h>
#include <prometheus/exposer.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <stdexcept>
#include <vector>

#include "loads/common/exposer_options.h"
#include "loads/common/secret.h"

namespace loads::common {

namespace {

// What the CivetWeb handler reads.
struct Protected {
  std::shared_ptr<prometheus::Registry> registry;
  std::string token;
};

int ServeMetrics(mg_connection* conn, void* data) {
  const auto* endpoint = static_cast<const Protected*>(data);
  const char* header = mg_get_header(conn, "Authorization");
  if (header == nullptr || !SameSecret(header, "Bearer " + endpoint->token)) {
    const std::string body = "this endpoint needs \"Authorization: Bearer TOKEN\"\n";
    mg_printf(conn,
              "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer\r\nContent-Type: "
              "text/plain\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
              body.size(), body.c_str());
    return 401;
  }
  std::string body;
  try {
    body = prometheus::TextSerializer().Serialize(endpoint->registry->Collect());
  } catch (const std::exception&) {
    mg_printf(conn, "HTTP/1.1 500 Internal Server Error\r\nConnection: close\r\n\r\n");
    return 500;
  }
  mg_printf(conn,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
            "Content-Length: %zu\r\nConnection: close\r\n\r\n",
            body.size());
  mg_write(conn, body.data(), body.size());
  return 200;
}

}  // namespace

struct MetricsEndpoint::Impl {
  Protected served;
  std::unique_ptr<prometheus::Exposer> exposer;  // without a token
  mg_context* context = nullptr;                 // with one
};

MetricsEndpoint::MetricsEndpoint(const std::string& address,
                                 std::shared_ptr<prometheus::Registry> registry, std::string token)
    : impl_(std::make_unique<Impl>()) {
  impl_->served.registry = std::move(registry);
  impl_->served.token = std::move(token);
  if (impl_->served.token.empty()) {
    impl_->exposer = std::make_unique<prometheus::Exposer>(ExposerOptions(address));
    impl_->exposer->RegisterCollectable(impl_->served.registry);
    return;
  }
  const std::vector<std::string> settings = ExposerOptions(address);
  std::vector<const char*> options;
  for (const auto& setting : settings) options.push_back(setting.c_str());
  options.push_back(nullptr);
  mg_callbacks callbacks{};
  impl_->context = mg_start(&callbacks, nullptr, options.data());
  if (impl_->context == nullptr) throw std::runtime_error("cannot listen on " + address);
  mg_set_request_handler(impl_->context, "/metrics", ServeMetrics, &impl_->served);
}

MetricsEndpoint::~MetricsEndpoint() {
  if (impl_->context) mg_stop(impl_->context);
}

int MetricsEndpoint::port() const {
  if (impl_->context) {
    mg_server_port ports[2];
    const int n = mg_get_server_ports(impl_->context, 2, ports);
    return n > 0 ? ports[0].port : 0;
  }
  auto ports = impl_->exposer->GetListeningPorts();
  return ports.empty() ? 0 : ports.front();
}

}  // namespace loads::common
