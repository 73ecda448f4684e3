// The Kubernetes API over HTTPS with libcurl.

#include "loads/controller/kube_api.h"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>
#include <vector>

#include "loads/common/thread_annotations.h"
#include "loads/version.h"

namespace loads::controller {
namespace {

// Bodies beyond this are refused (curl then fails the call): one page of a pod list is far
// smaller, and a broken server must not fill the controller's memory.
constexpr size_t kMaxBody = 16 << 20;

std::string ReadToken(const std::string& path) {
  std::ifstream file(path);
  std::string line;
  std::getline(file, line);
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
  return line;
}

size_t Collect(char* data, size_t size, size_t n, void* out) {
  auto* body = static_cast<std::string*>(out);
  if (body->size() + size * n > kMaxBody) return 0;
  body->append(data, size * n);
  return size * n;
}

size_t CollectRetryAfter(char* data, size_t size, size_t n, void* out) {
  std::string_view line(data, size * n);
  constexpr std::string_view kName = "retry-after:";
  if (line.size() > kName.size()) {
    std::string head(line.substr(0, kName.size()));
    std::transform(head.begin(), head.end(), head.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (head == kName) {
      std::string value(line.substr(kName.size()));
      value.erase(0, value.find_first_not_of(" \t"));
      while (!value.empty() && std::isspace(static_cast<unsigned char>(value.back()))) {
        value.pop_back();
      }
      *static_cast<std::string*>(out) = value;
    }
  }
  return size * n;
}

// A watch body, cut into lines for the caller.
struct StreamState {
  std::string pending;
  const std::function<bool(std::string_view)>* on_line;
  const std::atomic<bool>* stop;
  bool ended_by_caller = false;
};

size_t CollectLines(char* data, size_t size, size_t n, void* out) {
  auto* state = static_cast<StreamState*>(out);
  state->pending.append(data, size * n);
  size_t start = 0;
  for (size_t end; (end = state->pending.find('\n', start)) != std::string::npos; start = end + 1) {
    std::string_view line(state->pending.data() + start, end - start);
    if (!line.empty() && !(*state->on_line)(line)) {
      state->ended_by_caller = true;
      return 0;
    }
  }
  state->pending.erase(0, start);
  if (state->pending.size() > kMaxBody) return 0;  // one event cannot be that large
  return size * n;
}

int StopCheck(void* data, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  const auto* stop = static_cast<const std::atomic<bool>*>(data);
  return stop && stop->load() ? 1 : 0;
}

class CurlKubeApi : public KubeApi {
 public:
  CurlKubeApi(std::string server, std::string ca_file, std::string token_file,
              std::string user_agent)
      : server_(std::move(server)),
        ca_file_(std::move(ca_file)),
        token_file_(std::move(token_file)),
        user_agent_(std::move(user_agent)) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
  }

  ~CurlKubeApi() override {
    for (CURL* handle : idle_) curl_easy_cleanup(handle);
  }

  KubeResponse Call(const std::string& method, const std::string& path,
                    const std::string& body) override {
    KubeResponse r;
    CURL* curl = Take();
    if (!curl) {
      r.error = "cannot initialise libcurl";
      return r;
    }
    curl_slist* headers = Prepare(curl, method, path, &r);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 15000L);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, Collect);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &r.body);
    if (!body.empty()) {
      // PATCH bodies are JSON merge patches (RFC 7386), the one kind that needs no schema.
      headers = curl_slist_append(headers, method == "PATCH"
                                               ? "Content-Type: application/merge-patch+json"
                                               : "Content-Type: application/json");
      curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.c_str());
      curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
    }
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    Perform(curl, &r);
    curl_slist_free_all(headers);
    Give(curl);
    return r;
  }

  KubeResponse Stream(const std::string& path,
                      const std::function<bool(std::string_view line)>& on_line,
                      const std::atomic<bool>* stop, std::chrono::seconds idle) override {
    KubeResponse r;
    CURL* curl = Take();
    if (!curl) {
      r.error = "cannot initialise libcurl";
      return r;
    }
    curl_slist* headers = Prepare(curl, "GET", path, &r);
    StreamState state{.pending = {}, .on_line = &on_line, .stop = stop, .ended_by_caller = false};
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, CollectLines);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &state);
    // A watch that goes silent (a dead connection that no FIN announced) is given up after
    // `idle`: the server sends bookmarks and ends watches on its own well before.
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, static_cast<long>(idle.count()));
    curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, StopCheck);
    curl_easy_setopt(curl, CURLOPT_XFERINFODATA, stop);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    Perform(curl, &r, /*keep_status=*/true);
    curl_slist_free_all(headers);
    Give(curl);
    if (state.ended_by_caller) r.error.clear();
    r.body = std::move(state.pending);
    return r;
  }

 private:
  // A handle for one request; each thread works with its own, and they are kept for their
  // connections.
  CURL* Take() LOADS_EXCLUDES(mu_) {
    {
      MutexLock lock(mu_);
      if (!idle_.empty()) {
        CURL* handle = idle_.back();
        idle_.pop_back();
        return handle;
      }
    }
    return curl_easy_init();
  }

  void Give(CURL* handle) LOADS_EXCLUDES(mu_) {
    MutexLock lock(mu_);
    if (idle_.size() < 64) {
      idle_.push_back(handle);
    } else {
      curl_easy_cleanup(handle);
    }
  }

  curl_slist* Prepare(CURL* curl, const std::string& method, const std::string& path,
                      KubeResponse* r) {
    curl_easy_reset(curl);
    curl_easy_setopt(curl, CURLOPT_URL, (server_ + path).c_str());
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method.c_str());
    curl_easy_setopt(curl, CURLOPT_CAINFO, ca_file_.c_str());
    // Only the cluster's CA: not also the system's (libcurl's default CA path), which would
    // let any public certificate for the API server's name pass.
    curl_easy_setopt(curl, CURLOPT_CAPATH, nullptr);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, user_agent_.c_str());
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, CollectRetryAfter);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &r->retry_after);
    curl_slist* headers = nullptr;
    headers =
        curl_slist_append(headers, ("Authorization: Bearer " + ReadToken(token_file_)).c_str());
    headers = curl_slist_append(headers, "Accept: application/json");
    return headers;
  }

  // keep_status: a stream cut after its headers keeps their status (a watch that ran, then
  // lost its connection, is not an API that cannot be reached).
  void Perform(CURL* curl, KubeResponse* r, bool keep_status = false) {
    const CURLcode code = curl_easy_perform(curl);
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &r->status);
    if (code != CURLE_OK) {
      r->error = "cannot reach the Kubernetes API at " + server_ + ": " + curl_easy_strerror(code);
      if (!keep_status && code != CURLE_WRITE_ERROR && code != CURLE_ABORTED_BY_CALLBACK) {
        r->status = 0;
      }
      switch (code) {
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_ISSUER_ERROR:
        case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
        case CURLE_URL_MALFORMAT:
        case CURLE_UNSUPPORTED_PROTOCOL:
          r->permanent = true;
          break;
        default:
          break;
      }
    }
  }

  const std::string server_, ca_file_, token_file_, user_agent_;
  Mutex mu_;
  std::vector<CURL*> idle_ LOADS_GUARDED_BY(mu_);  // handles kept for their connections
};

}  // namespace

std::unique_ptr<KubeApi> MakeCurlKubeApi(std::string server, std::string ca_file,
                                         std::string token_file, std::string user_agent) {
  return std::make_unique<CurlKubeApi>(std::move(server), std::move(ca_file), std::move(token_file),
                                       std::move(user_agent));
}

StatusOr<KubeConnection> ResolveKubeConnection(std::string api_server,
                                               const std::string& service_account_dir,
                                               std::string namespace_name) {
  KubeConnection c;
  if (api_server.empty()) {
    const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
    const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
    if (!host || !port || !*host || !*port) {
      return InvalidArgumentError(
          "not in a Kubernetes pod (KUBERNETES_SERVICE_HOST is not set) and no "
          "--kubernetes-api given");
    }
    const std::string h = host;
    api_server = "https://" + (h.find(':') != std::string::npos ? "[" + h + "]" : h) + ":" + port;
  }
  if (!api_server.starts_with("https://")) {
    return InvalidArgumentError("the Kubernetes API must be reached over https, not " + api_server);
  }
  while (api_server.ends_with('/')) api_server.pop_back();
  c.server = api_server;
  c.service_account_dir = service_account_dir;
  if (ReadToken(service_account_dir + "/token").empty()) {
    return InvalidArgumentError("cannot read the service account token " + service_account_dir +
                                "/token");
  }
  if (!std::ifstream(service_account_dir + "/ca.crt")) {
    return InvalidArgumentError("cannot read the cluster CA " + service_account_dir + "/ca.crt");
  }
  c.own_namespace = ReadToken(service_account_dir + "/namespace");
  c.namespace_name = namespace_name.empty() ? c.own_namespace : namespace_name;
  if (c.namespace_name.empty()) {
    return InvalidArgumentError("cannot read the namespace " + service_account_dir + "/namespace");
  }
  return c;
}

std::unique_ptr<KubeApi> MakeKubeApi(const KubeConnection& connection) {
  return MakeCurlKubeApi(connection.server, connection.service_account_dir + "/ca.crt",
                         connection.service_account_dir + "/token",
                         std::string("loads-controller/") + LOADS_SDK_VERSION);
}

namespace {

std::string Base64(const std::string& data) {
  static const char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < data.size(); i += 3) {
    const uint32_t n = (static_cast<unsigned char>(data[i]) << 16) |
                       (static_cast<unsigned char>(data[i + 1]) << 8) |
                       static_cast<unsigned char>(data[i + 2]);
    for (int shift : {18, 12, 6, 0}) out += kAlphabet[(n >> shift) & 63];
  }
  if (i < data.size()) {
    uint32_t n = static_cast<unsigned char>(data[i]) << 16;
    if (i + 1 < data.size()) n |= static_cast<unsigned char>(data[i + 1]) << 8;
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += i + 1 < data.size() ? kAlphabet[(n >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

}  // namespace

Status SetSecretKey(KubeApi& api, const std::string& namespace_name, const std::string& name,
                    const std::string& key, const std::string& value,
                    std::chrono::seconds patience) {
  const auto deadline = std::chrono::steady_clock::now() + patience;
  const std::string path = "/api/v1/namespaces/" + namespace_name + "/secrets/" + name;
  const std::string encoded = Base64(value);
  const KubeResponse got = CallWithRetry(api, "GET", path, "", deadline);
  if (got.status == 200) {
    const auto secret = nlohmann::json::parse(got.body, nullptr, false);
    if (secret.is_object() && secret.contains("data") && secret["data"].is_object() &&
        secret["data"].value(key, "") == encoded) {
      return OkStatus();
    }
  } else if (got.status == 404) {
    return FailedPreconditionError("the Secret " + namespace_name + "/" + name +
                                   " does not exist (it holds the controller's CURVE key)");
  } else {
    return UnavailableError("cannot read the Secret " + namespace_name + "/" + name + ": " +
                            Explain(got));
  }
  const nlohmann::json patch = {{"data", {{key, encoded}}}};
  const KubeResponse patched = CallWithRetry(api, "PATCH", path, patch.dump(), deadline);
  if (patched.status != 200) {
    return UnavailableError("cannot write " + key + " into the Secret " + namespace_name + "/" +
                            name + ": " + Explain(patched));
  }
  return OkStatus();
}

std::string Explain(const KubeResponse& r) {
  if (r.status == 0) return r.error;
  const auto body = nlohmann::json::parse(r.body, nullptr, false);
  std::string message = "HTTP " + std::to_string(r.status);
  if (body.is_object() && body.contains("message") && body["message"].is_string()) {
    message += ": " + body["message"].get<std::string>();
  }
  return message;
}

KubeResponse CallWithRetry(KubeApi& api, const std::string& method, const std::string& path,
                           const std::string& body, std::chrono::steady_clock::time_point deadline,
                           const std::atomic<bool>* cancel, int* gave_up_after) {
  thread_local std::minstd_rand jitter(std::random_device{}());
  if (gave_up_after) *gave_up_after = 0;
  for (int attempt = 1;; ++attempt) {
    KubeResponse r = api.Call(method, path, body);
    const auto delay = RetryDelay(r, attempt);
    if (!delay) return r;
    const auto wait = *delay + std::chrono::milliseconds(jitter() % (delay->count() / 5 + 1));
    if (std::chrono::steady_clock::now() + wait > deadline || (cancel && *cancel)) {
      if (gave_up_after) *gave_up_after = attempt;
      return r;
    }
    std::this_thread::sleep_for(wait);
  }
}

std::string StatusReason(const std::string& body) {
  const auto status = nlohmann::json::parse(body, nullptr, false);
  if (!status.is_object()) return "";
  const auto it = status.find("reason");
  return it != status.end() && it->is_string() ? it->get<std::string>() : "";
}

std::optional<std::chrono::milliseconds> RetryDelay(const KubeResponse& response, int attempt) {
  if (response.permanent) return std::nullopt;
  const long s = response.status;
  const bool retry = s == 0 || s == 429 || s == 500 || s == 502 || s == 503 || s == 504 ||
                     (s == 409 && StatusReason(response.body) != "AlreadyExists");
  if (!retry) return std::nullopt;
  if ((s == 429 || s == 503) && !response.retry_after.empty()) {
    // Seconds; the HTTP-date form is not sent by the API server.
    char* end = nullptr;
    const long seconds = std::strtol(response.retry_after.c_str(), &end, 10);
    if (end != response.retry_after.c_str() && *end == '\0' && seconds >= 0) {
      return std::chrono::milliseconds(std::min(seconds, 30L) * 1000);
    }
  }
  const int doublings = std::clamp(attempt - 1, 0, 4);
  return std::chrono::milliseconds(250 << doublings);
}

}  // namespace loads::controller
