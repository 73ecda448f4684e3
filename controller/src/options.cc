#include "loads/controller/options.h"

#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cctype>
#include <charconv>
#include <cmath>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <sstream>

#include "loads/common/curve.h"
#include "loads/common/run_spec.h"
#include "loads/common/target_allow.h"
#include "loads/common/url.h"
#include "loads/version.h"

namespace loads::controller {
namespace {

Status Invalid(const std::string& option, const std::string& value, const std::string& expected) {
  return InvalidArgumentError("invalid value for " + option + ": '" + value + "' (expected " +
                              expected + ")");
}

StatusOr<int64_t> Integer(const std::string& option, const std::string& value, int64_t low,
                          int64_t high, const std::string& unit = "") {
  int64_t n = 0;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
  if (ec != std::errc() || end != value.data() + value.size() || n < low || n > high) {
    return Invalid(
        option, value,
        (unit.empty() ? "" : unit + ", ") + std::to_string(low) + ".." + std::to_string(high));
  }
  return n;
}

StatusOr<std::chrono::milliseconds> Seconds(const std::string& option, const std::string& value,
                                            double low, double high) {
  auto seconds = spec::ParseSeconds(value, low, high);
  if (!seconds) {
    char range[64];
    std::snprintf(range, sizeof range, "seconds, %g..%g", low, high);
    return Invalid(option, value, range);
  }
  return std::chrono::milliseconds(static_cast<int64_t>(std::llround(*seconds * 1000)));
}

// The certificate and key of --tls-cert/--tls-key, checked at start: gRPC would otherwise fail
// every handshake later, with nothing on the command line to say why.
Status CheckKeyPair(const std::string& cert_path, const std::string& key_path) {
  std::unique_ptr<BIO, decltype(&BIO_free)> cert_file(BIO_new_file(cert_path.c_str(), "r"),
                                                      BIO_free);
  std::unique_ptr<X509, decltype(&X509_free)> cert(
      cert_file ? PEM_read_bio_X509(cert_file.get(), nullptr, nullptr, nullptr) : nullptr,
      X509_free);
  if (!cert) return InvalidArgumentError("--tls-cert " + cert_path + ": not a PEM certificate");
  std::unique_ptr<BIO, decltype(&BIO_free)> key_file(BIO_new_file(key_path.c_str(), "r"), BIO_free);
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
      key_file ? PEM_read_bio_PrivateKey(key_file.get(), nullptr, nullptr, nullptr) : nullptr,
      EVP_PKEY_free);
  if (!key) return InvalidArgumentError("--tls-key " + key_path + ": not a PEM private key");
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    return InvalidArgumentError("--tls-key " + key_path + " is not the key of --tls-cert " +
                                cert_path);
  }
  return OkStatus();
}

// A file the controller reads now and again later (certificates): it must be readable now.
Status Readable(const std::string& path, std::string* out) {
  std::ifstream file(path);
  if (!file) return InvalidArgumentError("cannot read " + path);
  *out = path;
  return OkStatus();
}

StatusOr<std::string> ReadToken(const std::string& path) {
  std::ifstream file(path);
  std::string token;
  if (!file || !std::getline(file, token) || token.empty()) {
    return InvalidArgumentError("cannot read a token from " + path);
  }
  return token;
}

Status Endpoint(const std::string& option, const std::string& value, std::string* out) {
  if (!value.starts_with("tcp://") && !value.starts_with("ipc://")) {
    return Invalid(option, value, "tcp://HOST:PORT");
  }
  *out = value;
  return OkStatus();
}

Status HostPort(const std::string& option, const std::string& value, std::string* out) {
  if (value.find(':') == std::string::npos) return Invalid(option, value, "HOST:PORT");
  *out = value;
  return OkStatus();
}

bool Loopback(const std::string& host) { return common::IsLoopbackHost(host); }

}  // namespace

const char* ControllerUsage() {
  return "usage: loads-controller [options]\n"
         "\n"
         "Accepts runs over gRPC, spreads them over loads-worker processes that connect over\n"
         "ZeroMQ, merges their results exactly and keeps them across restarts.\n"
         "\n"
         "  --grpc ADDRESS          gRPC API address (default 127.0.0.1:50051; port 0 = any)\n"
         "  --zmq ENDPOINT          where workers connect (default tcp://127.0.0.1:5555; port * = "
         "any)\n"
         "  --publish ENDPOINT      PUB socket republishing every snapshot, topic = run id\n"
         "                          (default tcp://127.0.0.1:5556; port * = any)\n"
         "  --token-file FILE       workers must send this token (first line of FILE)\n"
         "  --api-token-file FILE   gRPC clients must send \"authorization: Bearer TOKEN\"\n"
         "  --read-token-file FILE  a second token that may only list, get and watch runs\n"
         "  --tls-cert FILE         serve gRPC over TLS with this certificate chain (PEM) ...\n"
         "  --tls-key FILE          ... and its private key; both are re-read when they change\n"
         "  --client-ca FILE        mTLS: clients must present a certificate signed by this CA\n"
         "  --health ADDRESS        also serve grpc.health.v1 alone, in plain text, for probes\n"
         "  --curve-key-file FILE   encrypt the worker and results sockets with CurveZMQ, with\n"
         "                          this key pair (loads-controller keygen FILE makes one)\n"
         "  --curve-allow FILE      the public keys of the workers (and subscribers) allowed\n"
         "  --curve-any-worker      allow any CURVE peer that knows the controller's key (the\n"
         "                          worker token then decides)\n"
         "  --curve-public-key-secret NAME  write the public key of --curve-key-file into the key\n"
         "                          public-key of this Kubernetes Secret at start (workers\n"
         "                          mount it: loads-worker --curve-server-key-file)\n"
         "  --allow-target PATTERN  runs may only send requests to these hosts (host, host:port,\n"
         "                          *.domain, address, network/bits); repeatable; default: any\n"
         "  --insecure              allow non-loopback addresses without tokens (and --publish\n"
         "                          there without CURVE)\n"
         "  --metrics ADDRESS       Prometheus /metrics (default 127.0.0.1:9464; port 0 = any)\n"
         "  --metrics-retention S   keep a finished run's series S seconds (default 300)\n"
         "  --metrics-token-file FILE  /metrics answers only \"Authorization: Bearer TOKEN\"\n"
         "  --notify TARGET         tell every run's end: webhook:URL (POSTs the JSON report) or\n"
         "                          email:ADDRESS (with --smtp); repeatable; runs add their own\n"
         "  --smtp HOST:PORT        the mail server of email targets (plain SMTP, no login)\n"
         "  --smtp-from ADDRESS     the sender of those mails (default loads@localhost)\n"
         "  --notify-timeout S      how long each attempt to notify may take (default 5; 3 tries)\n"
         "  --web ADDRESS           serve the live page (runs, live charts, stop button) on\n"
         "                          http://ADDRESS/ (default: not served; port 0 = any); beyond\n"
         "                          loopback it needs --api-token-file\n"
         "\n"
         "state (runs survive restarts):\n"
         "  --state-dir DIR         where runs are kept (default $XDG_DATA_HOME/loads/controller,\n"
         "                          else ~/.local/share/loads/controller)\n"
         "  --no-state              keep nothing: a restart forgets every run\n"
         "  --restart-grace S       after a restart, how long a running run waits for its\n"
         "                          workers to come back before they are lost (default 15)\n"
         "  --max-runs N            finished runs kept (default 1000)\n"
         "  --max-run-age S         finished runs older than S seconds are forgotten\n"
         "                          (default 604800, 7 days)\n"
         "\n"
         "workers:\n"
         "  --worker-timeout S      a silent worker is lost after S seconds (default 3)\n"
         "  --ready-timeout S       a run whose workers have not all loaded its test after S\n"
         "                          seconds fails (default 60)\n"
         "  --stop-timeout S        a stopped run's workers that have not sent their final\n"
         "                          results after S seconds are lost (default 10)\n"
         "  --advertise ENDPOINT    the ZeroMQ endpoint launched workers connect to (default: the\n"
         "                          bound --zmq endpoint)\n"
         "  --launcher KIND         how workers are started: local (default) or kubernetes\n"
         "\n"
         "local launcher:\n"
         "  --max-local-workers N   loads-worker processes the controller may start (default 16;\n"
         "                          0: never start any)\n"
         "  --worker-bin PATH       the loads-worker binary (default: next to loads-controller)\n"
         "\n"
         "kubernetes launcher (docs/kubernetes.md):\n"
         "  --worker-image IMAGE    the worker pods' image (required)\n"
         "  --worker-cpu Q          default CPU request of a worker pod (default 500m)\n"
         "  --worker-memory Q       default memory request and limit (default 256Mi)\n"
         "  --worker-token-secret S Secret whose key worker-token the pods mount as their token\n"
         "  --image-pull-secret S   a Secret the pods pull their image with (repeatable)\n"
         "  --image-pull-policy P   the pods' imagePullPolicy: IfNotPresent (default), Always, "
         "Never\n"
         "  --worker-pending-timeout S  a pod pending longer fails its run (default 120)\n"
         "  --max-launched-workers N    worker pods alive at once (default 100)\n"
         "  --worker-pod-template F a pod in JSON whose labels, annotations and spec the worker\n"
         "                          pods start from (placement, security contexts, sidecars)\n"
         "  --kubernetes-api-parallelism N  API requests at once when pods are created or\n"
         "                          deleted (default 8, 1 to 64)\n"
         "  --instance NAME         app.kubernetes.io/instance label of the pods (default loads)\n"
         "  --namespace NS          default: the service account's namespace\n"
         "  --kubernetes-api URL    default: https://$KUBERNETES_SERVICE_HOST:"
         "$KUBERNETES_SERVICE_PORT\n"
         "  --service-account-dir D token, ca.crt and namespace (default\n"
         "                          /var/run/secrets/kubernetes.io/serviceaccount)\n"
         "  The pods are owned by the pod named by $LOADS_POD_NAME with uid $LOADS_POD_UID.\n";
}

StatusOr<ControllerOptions> ParseControllerOptions(const std::vector<std::string>& args,
                                                   const std::string& self_dir) {
  ControllerOptions o;
  o.broker.bind = "tcp://127.0.0.1:5555";
  o.broker.publish = "tcp://127.0.0.1:5556";
  o.broker.sdk_version = LOADS_SDK_VERSION;
  o.state_dir = DefaultStateDir();
  o.worker_bin = self_dir + "/loads-worker";
  bool no_state = false, state_dir_given = false;
  using Handler = std::function<Status(const std::string&, const std::string&)>;
  const auto seconds = [](std::chrono::milliseconds* out, double low, double high) -> Handler {
    return [=](const std::string& option, const std::string& value) {
      auto ms = Seconds(option, value, low, high);
      if (!ms.ok()) return ms.status();
      *out = *ms;
      return OkStatus();
    };
  };
  const auto name = [](std::string* out, const char* chars) -> Handler {
    // A label value, and a DNS label: both at most 63 characters, alphanumeric at the ends.
    return [=](const std::string& option, const std::string& value) {
      if (value.empty() || value.size() > 63 ||
          value.find_first_not_of(chars) != std::string::npos || !std::isalnum(value.front()) ||
          !std::isalnum(value.back())) {
        return Invalid(option, value, "a Kubernetes name");
      }
      *out = value;
      return OkStatus();
    };
  };
  const auto quantity = [](std::string* out) -> Handler {
    return [=](const std::string& option, const std::string& value) {
      if (!spec::IsResourceQuantity(value)) {
        return Invalid(option, value, "a Kubernetes quantity such as 500m, 2, 256Mi");
      }
      *out = value;
      return OkStatus();
    };
  };
  const std::map<std::string, Handler> with_value = {
      {"--grpc", [&](auto& opt, auto& v) { return HostPort(opt, v, &o.grpc); }},
      {"--zmq", [&](auto& opt, auto& v) { return Endpoint(opt, v, &o.broker.bind); }},
      {"--publish", [&](auto& opt, auto& v) { return Endpoint(opt, v, &o.broker.publish); }},
      {"--metrics", [&](auto& opt, auto& v) { return HostPort(opt, v, &o.metrics); }},
      {"--web", [&](auto& opt, auto& v) { return HostPort(opt, v, &o.web); }},
      {"--metrics-retention",
       [&](auto& opt, auto& v) {
         auto n = Integer(opt, v, 0, 7 * 24 * 3600, "seconds");
         if (n.ok()) o.metrics_retention = std::chrono::seconds(*n);
         return n.status();
       }},
      {"--curve-key-file",
       [&](auto&, auto& v) {
         auto keys = common::ReadCurveKeyFile(v);
         if (!keys.ok()) return keys.status();
         o.broker.curve_public_key = keys->public_key;
         o.broker.curve_secret_key = keys->secret_key;
         return OkStatus();
       }},
      {"--curve-public-key-secret",
       name(&o.curve_public_key_secret, "abcdefghijklmnopqrstuvwxyz0123456789-.")},
      {"--curve-allow",
       [&](auto&, auto& v) {
         // Public keys, one a line ("KEY" or "public: KEY"); a line starting with '#' is a
         // comment ('#' is a Z85 character: it cannot start one anywhere else).
         std::ifstream file(v);
         if (!file) return InvalidArgumentError("cannot read " + v);
         std::string line;
         for (int n = 1; std::getline(file, line); ++n) {
           if (line.starts_with("#")) continue;
           if (line.starts_with("public: ")) line = line.substr(8);
           while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) {
             line.pop_back();
           }
           if (line.empty()) continue;
           if (!common::IsCurveKey(line)) {
             return InvalidArgumentError(v + ":" + std::to_string(n) +
                                         ": not a Z85 public key of 40 characters");
           }
           o.broker.curve_allowed.insert(line);
         }
         return OkStatus();
       }},
      {"--allow-target",
       [&](auto& opt, auto& v) {
         if (auto parsed = common::TargetAllowList::Parse({v}); !parsed.ok()) {
           return Invalid(opt, v, "host, host:port, *.domain, an address or a network");
         }
         o.allow_targets.push_back(v);
         return OkStatus();
       }},
      {"--metrics-token-file",
       [&](auto&, auto& v) {
         auto token = ReadToken(v);
         if (token.ok()) o.metrics_token = *token;
         return token.status();
       }},
      {"--read-token-file",
       [&](auto&, auto& v) {
         auto token = ReadToken(v);
         if (token.ok()) o.read_token = *token;
         return token.status();
       }},
      {"--tls-cert", [&](auto&, auto& v) { return Readable(v, &o.tls_cert); }},
      {"--tls-key", [&](auto&, auto& v) { return Readable(v, &o.tls_key); }},
      {"--client-ca", [&](auto&, auto& v) { return Readable(v, &o.client_ca); }},
      {"--health", [&](auto& opt, auto& v) { return HostPort(opt, v, &o.health); }},
      {"--api-token-file",
       [&](auto&, auto& v) {
         auto token = ReadToken(v);
         if (token.ok()) o.api_token = *token;
         return token.status();
       }},
      {"--token-file",
       [&](auto&, auto& v) {
         auto token = ReadToken(v);
         if (token.ok()) o.broker.token = *token;
         o.token_file = v;
         return token.status();
       }},
      {"--worker-timeout",
       [&](auto& opt, auto& v) {
         Status s = seconds(&o.broker.worker_timeout, 0.1, 3600)(opt, v);
         o.broker.heartbeat =
             std::min(std::chrono::milliseconds(1000), o.broker.worker_timeout / 3);
         return s;
       }},
      {"--ready-timeout", seconds(&o.broker.ready_timeout, 1, 86400)},
      {"--stop-timeout", seconds(&o.broker.stop_timeout, 0.1, 3600)},
      {"--restart-grace", seconds(&o.broker.restart_grace, 0, 3600)},
      {"--state-dir",
       [&](auto& opt, auto& v) {
         if (v.empty()) return Invalid(opt, v, "a folder");
         o.state_dir = v;
         state_dir_given = true;
         return OkStatus();
       }},
      {"--max-runs",
       [&](auto& opt, auto& v) {
         auto n = Integer(opt, v, 1, 1'000'000);
         if (n.ok()) o.broker.max_runs = static_cast<size_t>(*n);
         return n.status();
       }},
      {"--max-run-age",
       [&](auto& opt, auto& v) {
         auto n = Integer(opt, v, 60, int64_t{10} * 365 * 24 * 3600, "seconds");
         if (n.ok()) o.broker.max_run_age = std::chrono::seconds(*n);
         return n.status();
       }},
      {"--max-local-workers",
       [&](auto& opt, auto& v) {
         auto n = Integer(opt, v, 0, 1000);
         if (n.ok()) o.max_local_workers = static_cast<int>(*n);
         return n.status();
       }},
      {"--worker-bin",
       [&](auto&, auto& v) {
         o.worker_bin = v;
         return OkStatus();
       }},
      {"--launcher",
       [&](auto& opt, auto& v) {
         if (v != "local" && v != "kubernetes") return Invalid(opt, v, "local or kubernetes");
         o.launcher = v;
         return OkStatus();
       }},
      {"--advertise",
       [&](auto& opt, auto& v) {
         if (!v.starts_with("tcp://") || v.rfind(':') < 6) {
           return Invalid(opt, v, "tcp://HOST:PORT");
         }
         o.advertise = v;
         return OkStatus();
       }},
      {"--worker-image",
       [&](auto&, auto& v) {
         o.kubernetes.image = v;
         return OkStatus();
       }},
      {"--worker-cpu", quantity(&o.kubernetes.cpu)},
      {"--worker-memory", quantity(&o.kubernetes.memory)},
      {"--worker-token-secret",
       [&](auto&, auto& v) {
         o.kubernetes.token_secret = v;
         return OkStatus();
       }},
      {"--notify",
       [&](auto& opt, auto& v) {
         auto target = common::ParseNotifyTarget(v);
         if (!target.ok()) return Invalid(opt, v, target.status().message());
         if (o.notify.size() >= spec::kMaxNotify) return Invalid(opt, v, "at most 10 targets");
         o.notify.push_back(*target);
         return OkStatus();
       }},
      {"--smtp",
       [&](auto& opt, auto& v) {
         const size_t colon = v.rfind(':');
         if (colon == std::string::npos || colon == 0 || colon + 1 == v.size() ||
             v.find_first_of(" \r\n/@") != std::string::npos) {
           return Invalid(opt, v, "HOST:PORT");
         }
         o.notify_settings.smtp = v;
         return OkStatus();
       }},
      {"--smtp-from",
       [&](auto& opt, auto& v) {
         if (!common::ParseNotifyTarget("email:" + v).ok()) {
           return Invalid(opt, v, "a mail address");
         }
         o.notify_settings.smtp_from = v;
         return OkStatus();
       }},
      {"--notify-timeout", seconds(&o.notify_settings.timeout, 0.1, 60)},
      {"--image-pull-secret",
       [&](auto&, auto& v) {
         o.kubernetes.image_pull_secrets.push_back(v);
         return OkStatus();
       }},
      {"--image-pull-policy",
       [&](auto& opt, auto& v) {
         if (v != "IfNotPresent" && v != "Always" && v != "Never") {
           return Invalid(opt, v, "IfNotPresent, Always or Never");
         }
         o.kubernetes.image_pull_policy = v;
         return OkStatus();
       }},
      {"--worker-pending-timeout",
       [&](auto& opt, auto& v) {
         auto n = Integer(opt, v, 1, 86400, "seconds");
         if (n.ok()) o.kubernetes.pending_timeout = std::chrono::seconds(*n);
         return n.status();
       }},
      {"--max-launched-workers",
       [&](auto& opt, auto& v) {
         auto n = Integer(opt, v, 1, 10000);
         if (n.ok()) o.kubernetes.max_workers = static_cast<int>(*n);
         return n.status();
       }},
      {"--worker-pod-template",
       [&](auto& opt, auto& v) {
         std::ifstream file(v);
         std::stringstream text;
         if (!file || !(text << file.rdbuf())) {
           return InvalidArgumentError(opt + ": cannot read " + v);
         }
         o.kubernetes.pod_template = text.str();
         if (o.kubernetes.pod_template.empty()) {
           return InvalidArgumentError(opt + ": " + v + " is empty");
         }
         return OkStatus();
       }},
      {"--kubernetes-api-parallelism",
       [&](auto& opt, auto& v) {
         auto n = Integer(opt, v, 1, 64);
         if (n.ok()) o.kubernetes.api_parallelism = static_cast<int>(*n);
         return n.status();
       }},
      {"--instance", name(&o.kubernetes.instance,
                          "abcdefghijklmnopqrstuvwxyz0123456789-._ABCDEFGHIJKLMNOPQRSTUVWXYZ")},
      {"--namespace", name(&o.kubernetes.namespace_name, "abcdefghijklmnopqrstuvwxyz0123456789-")},
      {"--kubernetes-api",
       [&](auto&, auto& v) {
         o.kubernetes.api_server = v;
         return OkStatus();
       }},
      {"--service-account-dir",
       [&](auto&, auto& v) {
         o.kubernetes.service_account_dir = v;
         return OkStatus();
       }},
  };
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--help" || arg == "-h") {
      o.help = true;
      return o;
    }
    if (arg == "--version") {
      o.version = true;
      return o;
    }
    if (arg == "--insecure") {
      o.insecure = true;
      continue;
    }
    if (arg == "--no-state") {
      no_state = true;
      continue;
    }
    if (arg == "--curve-any-worker") {
      o.broker.curve_any_peer = true;
      continue;
    }
    auto handler = with_value.find(arg);
    if (handler == with_value.end()) {
      return InvalidArgumentError(arg.starts_with("-") ? "unknown option '" + arg + "'"
                                                       : "unexpected argument '" + arg + "'");
    }
    if (i + 1 >= args.size()) return InvalidArgumentError("option " + arg + " needs a value");
    if (Status s = handler->second(arg, args[++i]); !s.ok()) return s;
  }
  if (no_state && state_dir_given) {
    return InvalidArgumentError("give --state-dir or --no-state, not both");
  }
  if (no_state) o.state_dir.clear();
  return o;
}

Status CheckOptions(const ControllerOptions& o) {
  // Secure by default: the API and the worker endpoint may only be reachable beyond this machine
  // when a token decides who may submit runs and who may join as a worker.
  const std::string grpc_host = o.grpc.substr(0, o.grpc.rfind(':'));
  const std::string& bind = o.broker.bind;
  const size_t colon = bind.rfind(':');
  const std::string zmq_host =
      bind.substr(6, colon == std::string::npos ? std::string::npos : colon - 6);
  if (!o.insecure && !Loopback(grpc_host) && o.api_token.empty()) {
    return FailedPreconditionError("refusing to serve the API on " + o.grpc +
                                   " without --api-token-file (or --insecure)");
  }
  const bool curve = !o.broker.curve_secret_key.empty();
  if (!curve && (!o.broker.curve_allowed.empty() || o.broker.curve_any_peer)) {
    return InvalidArgumentError("--curve-allow and --curve-any-worker need --curve-key-file");
  }
  if (curve && o.broker.curve_allowed.empty() && !o.broker.curve_any_peer) {
    return InvalidArgumentError(
        "with --curve-key-file, say who may connect: --curve-allow FILE (their public keys) or "
        "--curve-any-worker (any peer with the controller's public key; the token decides)");
  }
  if (!o.curve_public_key_secret.empty() && !curve) {
    return InvalidArgumentError("--curve-public-key-secret needs --curve-key-file");
  }
  if (curve && o.launcher == "kubernetes" && !o.broker.curve_any_peer) {
    return InvalidArgumentError(
        "with --launcher kubernetes and --curve-key-file, add --curve-any-worker: launched pods "
        "make their own key pair, which no --curve-allow file can list (the worker token "
        "decides who registers)");
  }
  if (o.tls_cert.empty() != o.tls_key.empty()) {
    return InvalidArgumentError("--tls-cert and --tls-key go together");
  }
  if (!o.client_ca.empty() && o.tls_cert.empty()) {
    return InvalidArgumentError("--client-ca needs --tls-cert and --tls-key (mTLS is TLS)");
  }
  if (!o.read_token.empty() && o.api_token.empty()) {
    return InvalidArgumentError(
        "--read-token-file needs --api-token-file (the token that may start and stop runs)");
  }
  if (!o.read_token.empty() && o.read_token == o.api_token) {
    return InvalidArgumentError("the read-only token must differ from the API token");
  }
  if (!o.tls_cert.empty()) {
    if (Status pair = CheckKeyPair(o.tls_cert, o.tls_key); !pair.ok()) return pair;
  }
  if (!o.insecure && !Loopback(o.metrics.substr(0, o.metrics.rfind(':'))) &&
      o.metrics_token.empty()) {
    return FailedPreconditionError("refusing to serve /metrics on " + o.metrics +
                                   " without --metrics-token-file (or --insecure)");
  }
  const std::string& publish = o.broker.publish;
  if (!o.insecure && publish.starts_with("tcp://") &&
      !Loopback(publish.substr(6, publish.rfind(':') - 6)) && o.broker.curve_secret_key.empty()) {
    return FailedPreconditionError("refusing to publish results on " + publish +
                                   " in clear text without --curve-key-file (or --insecure)");
  }
  if (!o.web.empty() && !o.insecure && !Loopback(o.web.substr(0, o.web.rfind(':'))) &&
      o.api_token.empty()) {
    return FailedPreconditionError("refusing to serve the live page on " + o.web +
                                   " without --api-token-file (or --insecure)");
  }
  if (!o.insecure && bind.starts_with("tcp://") && !Loopback(zmq_host) && o.broker.token.empty()) {
    return FailedPreconditionError("refusing to accept workers on " + bind +
                                   " without --token-file (or --insecure)");
  }
  for (const auto& target : o.notify) {
    if (target.kind == common::NotifyTarget::Kind::kEmail && o.notify_settings.smtp.empty()) {
      return InvalidArgumentError("--notify " + target.text + " needs --smtp HOST:PORT");
    }
  }
  if (o.launcher == "kubernetes") {
    if (o.advertise.empty()) {
      return InvalidArgumentError(
          "--launcher kubernetes needs --advertise (the address of this controller's Service, as "
          "worker pods reach it)");
    }
    if (!o.broker.token.empty() && o.kubernetes.token_secret.empty()) {
      return InvalidArgumentError(
          "with --token-file, --launcher kubernetes needs --worker-token-secret (the Secret whose "
          "worker-token the pods present), or every pod would be refused");
    }
  }
  return OkStatus();
}

}  // namespace loads::controller
