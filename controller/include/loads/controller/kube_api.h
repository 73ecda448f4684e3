#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "loads/common/status.h"

namespace loads::controller {

// One answer of the Kubernetes API server.
struct KubeResponse {
  long status = 0;          // HTTP status; 0: no HTTP response (error says why)
  std::string body;         // JSON
  std::string error;        // transport error
  std::string retry_after;  // the Retry-After header, if any
  // A transport error that a retry cannot mend: the server's certificate is not trusted, the
  // URL is malformed.
  bool permanent = false;
};

// The Kubernetes API as the launcher needs it: single requests and watch streams. The real one
// speaks HTTPS with the service account's token and CA (MakeCurlKubeApi); tests can put a fake
// behind it.
//
// Thread safety: every method may be called from several threads at once.
class KubeApi {
 public:
  virtual ~KubeApi() = default;
  // One request; body "" sends none. Bounded by the implementation's own timeouts.
  virtual KubeResponse Call(const std::string& method, const std::string& path,
                            const std::string& body) = 0;
  // A streaming GET (a watch): on_line gets every complete line of the body as it arrives and
  // returns false to end the stream. Also ends when *stop becomes true (checked at least once a
  // second), when the server closes it, or when nothing (not even a bookmark) arrives for
  // `idle`. Returns the response's status (kept when the stream is cut after its headers, with
  // error saying why); its body holds only an unfinished last line.
  virtual KubeResponse Stream(const std::string& path,
                              const std::function<bool(std::string_view line)>& on_line,
                              const std::atomic<bool>* stop, std::chrono::seconds idle) = 0;
};

// The API server at `server` ("https://HOST:PORT"), verified with `ca_file` only (not the
// system's CAs), authenticated with the token in `token_file`, re-read at every request since
// Kubernetes rotates it. Each request carries `user_agent`.
std::unique_ptr<KubeApi> MakeCurlKubeApi(std::string server, std::string ca_file,
                                         std::string token_file, std::string user_agent);

// Where the API server is and who this process is to it.
struct KubeConnection {
  std::string server;               // "https://HOST:PORT"
  std::string service_account_dir;  // token, ca.crt, namespace
  std::string namespace_name;       // where to work
  std::string own_namespace;        // the service account's
};

// The connection from the flags (api_server, service_account_dir, namespace_name: "" for the
// defaults), else from the pod's environment (KUBERNETES_SERVICE_HOST/PORT) and its mounted
// service account. INVALID_ARGUMENT saying what is missing.
StatusOr<KubeConnection> ResolveKubeConnection(std::string api_server,
                                               const std::string& service_account_dir,
                                               std::string namespace_name);

// The real API of `connection`, with the controller's User-Agent.
std::unique_ptr<KubeApi> MakeKubeApi(const KubeConnection& connection);

// Sets the key `key` of the Secret `name` to `value` (a JSON merge patch, so the Secret's other
// keys stay), retried as RetryDelay says for up to `patience`. Unless it already holds that
// value: then nothing is written. UNAVAILABLE or FAILED_PRECONDITION with the API server's
// explanation.
Status SetSecretKey(KubeApi& api, const std::string& namespace_name, const std::string& name,
                    const std::string& key, const std::string& value,
                    std::chrono::seconds patience);

// Whether and when to try a failed request again. The API server asks clients to come back
// later with 429 (throttled) and 503, sometimes with a Retry-After; 500, 502, 504 and a lost
// connection are worth one more try; 409 Conflict is an optimistic-concurrency race that a retry
// resolves (409 AlreadyExists is not retried: the caller decides what it means). Anything else
// (400, 401, 403, 404, 422) would fail the same way again.
// attempt: 1 for the first retry. Returns the delay before the next attempt, or nullopt when
// the response is final. The delay doubles from 250 ms up to 4 s, or follows Retry-After
// (seconds, at most 30).
std::optional<std::chrono::milliseconds> RetryDelay(const KubeResponse& response, int attempt);

// What went wrong, from the API server's own Status object when it sent one ("HTTP 403:
// pods is forbidden: ..."), else the transport error.
std::string Explain(const KubeResponse& response);

// A request tried again as RetryDelay says, plus up to a fifth (so that callers throttled
// together do not come back together), until `deadline` or until *cancel is set. Returns the
// last answer; *gave_up_after (if given) is the number of attempts when it stopped with a retry
// still due, else 0.
KubeResponse CallWithRetry(KubeApi& api, const std::string& method, const std::string& path,
                           const std::string& body, std::chrono::steady_clock::time_point deadline,
                           const std::atomic<bool>* cancel = nullptr, int* gave_up_after = nullptr);

// The `reason` of the API server's Status object in body ("AlreadyExists", "Conflict"), or "".
std::string StatusReason(const std::string& body);

}  // namespace loads::controller
