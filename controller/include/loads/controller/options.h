#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "loads/common/notify.h"
#include "loads/common/status.h"
#include "loads/controller/broker.h"
#include "loads/controller/launcher.h"

namespace loads::controller {

// loads-controller's command line, parsed and checked (docs/cli.md#loads-controller).
struct ControllerOptions {
  std::string grpc = "127.0.0.1:50051";
  BrokerOptions broker;  // bind, publish, token, timeouts
  std::string token_file;
  std::string api_token;
  std::string read_token;  // --read-token-file: may list, get and watch runs, nothing else
  // gRPC over TLS (--tls-cert, --tls-key), with client certificates checked against
  // --client-ca (mTLS). The files are watched: rotated ones are served without a restart.
  std::string tls_cert, tls_key, client_ca;
  std::vector<std::string> allow_targets;  // --allow-target: the only hosts runs may target
  std::string health;  // --health HOST:PORT: grpc.health.v1 alone, in plain text (probes)
  std::string metrics = "127.0.0.1:9464";
  std::chrono::seconds metrics_retention{300};
  std::string metrics_token;  // --metrics-token-file: scrapes must carry it as a Bearer token
  std::string web;            // the live page's HOST:PORT; empty: not served
  std::vector<common::NotifyTarget> notify;  // told of every run's end (--notify)
  common::NotifySettings notify_settings;    // --smtp, --smtp-from, --notify-timeout
  bool insecure = false;
  // Where runs are kept across restarts; "" = nowhere (--no-state).
  std::string state_dir;
  std::string launcher = "local";  // or "kubernetes"
  int max_local_workers = 16;
  std::string worker_bin;  // default: loads-worker next to the controller
  std::string advertise;
  // --curve-public-key-secret: a Secret (in the controller's namespace) whose key public-key is set
  // to the controller's CURVE public key at start, for workers to mount.
  std::string curve_public_key_secret;
  KubernetesOptions kubernetes;
  bool help = false;
  bool version = false;
};

// Parses argv[1..] into options with their defaults (state_dir: DefaultStateDir(), worker_bin:
// `self_dir`/loads-worker). INVALID_ARGUMENT naming the option at fault, or the options. Reads
// token files. Does not check the combination (CheckOptions does).
StatusOr<ControllerOptions> ParseControllerOptions(const std::vector<std::string>& args,
                                                   const std::string& self_dir);

// Secure by default: refuses an API or worker endpoint reachable beyond this machine without a
// token, unless --insecure; and launcher combinations that cannot work.
Status CheckOptions(const ControllerOptions& options);

// The --help text.
const char* ControllerUsage();

}  // namespace loads::controller
