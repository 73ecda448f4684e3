#include "loads/common/live_page.h"

#include <civetweb.h>

#include <cstring>
#include <ctime>
#include <mutex>
#include <nlohmann/json.hpp>
#include <system_error>
#include <thread>

#include "loads/common/html_report.h"
#include "loads/common/secret.h"

namespace loads::common {
namespace {

using Json = nlohmann::json;

constexpr char kCookie[] = "loads_token";
// The page may talk to its own server and nothing else.
constexpr char kPolicy[] =
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src data:";

void Send(mg_connection* conn, int status, const char* reason, const std::string& type,
          const std::string& body, const std::string& extra_headers = "") {
  mg_printf(conn,
            "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
            "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
            "Content-Security-Policy: %s\r\n%sConnection: close\r\n\r\n",
            status, reason, type.c_str(), body.size(), kPolicy, extra_headers.c_str());
  mg_write(conn, body.data(), body.size());
}

void SendJson(mg_connection* conn, int status, const char* reason, const Json& body) {
  Send(conn, status, reason, "application/json",
       body.dump(-1, ' ', false, Json::error_handler_t::replace));
}

void SendError(mg_connection* conn, int status, const char* reason, const std::string& message) {
  SendJson(conn, status, reason, Json{{"error", message}});
}

std::string IsoTime(std::chrono::system_clock::time_point t) {
  if (t.time_since_epoch().count() == 0) return "";
  const std::time_t seconds = std::chrono::system_clock::to_time_t(t);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &utc);
  return text;
}

// The shell of both pages: the style, the charting library, the report renderer and the live
// script, which decides from the address what to show. Nothing of the run is in it.
std::string PageShell() {
  std::string page =
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
      "<title>Loads</title>\n<style>\n";
  page += ReportPageStyle();
  page += LivePageStyle();
  page += "</style>\n<script>\n";
  page += ChartLibraryScript();
  page +=
      "\n</script>\n</head>\n<body>\n<nav id=\"bar\"><a href=\"/\">Runs</a> "
      "<span id=\"status\"></span> <button id=\"stop\" hidden>Stop the run</button> "
      "<a id=\"download\" hidden>HTML report</a></nav>\n<main id=\"loads-report\"></main>\n"
      "<script>\n";
  page += ReportPageScript();
  page += "\n</script>\n<script>\n";
  page += LivePageScript();
  page += "\n</script>\n</body>\n</html>\n";
  return page;
}

// The report wrapped for an event or the API: one line of JSON.
std::string LiveJson(const RunSource::Live& live) {
  Json report;
  try {
    report = Json::parse(live.report_json);
  } catch (const std::exception&) {
    report = nullptr;  // not expected; the page says there is no report
  }
  return Json{{"state", live.state}, {"over", live.over}, {"report", report}}.dump(
      -1, ' ', false, Json::error_handler_t::replace);
}

}  // namespace

struct LivePageServer::Impl {
  RunSource* source;
  Options options;
  mg_context* context = nullptr;
  std::string shell = PageShell();
  std::atomic<bool> stopping{false};
  std::atomic<int> streams{0};
  std::mutex log_mu;
  std::string last_error;  // CivetWeb's, while starting

  enum class Access { kNone, kRead, kFull };

  // What a token allows.
  Access Of(const std::string& token) const {
    if (SameSecret(token, options.token)) return Access::kFull;
    if (!options.read_token.empty() && SameSecret(token, options.read_token)) {
      return Access::kRead;
    }
    return Access::kNone;
  }

  // What the request may do; answers 401 (and returns kNone) when it carries no right token.
  Access Authorized(mg_connection* conn, const mg_request_info* request, bool page) {
    if (options.token.empty()) return Access::kFull;
    if (const char* header = mg_get_header(conn, "Authorization")) {
      const std::string value = header;
      if (value.starts_with("Bearer ")) {
        if (Access a = Of(value.substr(7)); a != Access::kNone) return a;
      }
    }
    if (const char* cookies = mg_get_header(conn, "Cookie")) {
      char value[512];
      const int n = mg_get_cookie(cookies, kCookie, value, sizeof(value));
      if (n > 0) {
        if (Access a = Of(std::string(value, static_cast<size_t>(n))); a != Access::kNone) {
          return a;
        }
      }
    }
    if (page && request->query_string != nullptr) {
      char value[512];
      const int n = mg_get_var(request->query_string, std::strlen(request->query_string), "token",
                               value, sizeof(value));
      const std::string token = n > 0 ? std::string(value, static_cast<size_t>(n)) : "";
      if (n > 0 && Of(token) != Access::kNone) {
        // Once: the token moves into a cookie the browser sends back (and no script can read),
        // and the address bar loses it.
        const std::string cookie =
            std::string("Set-Cookie: ") + kCookie + "=" + token +
            "; Path=/; HttpOnly; SameSite=Strict\r\nLocation: " + request->local_uri_raw + "\r\n";
        Send(conn, 303, "See Other", "text/plain", "", cookie);
        return Access::kNone;
      }
    }
    if (page) {
      Send(conn, 401, "Unauthorized", "text/plain; charset=utf-8",
           "This page needs the controller's API token: open it once as ?token=TOKEN (it is "
           "then kept in a cookie), or send \"Authorization: Bearer TOKEN\".\n");
    } else {
      SendError(conn, 401, "Unauthorized",
                "this controller needs its API token: \"Authorization: Bearer TOKEN\" or the "
                "cookie of the page");
    }
    return Access::kNone;
  }

  int Handle(mg_connection* conn) {
    const mg_request_info* request = mg_get_request_info(conn);
    const std::string method = request->request_method ? request->request_method : "";
    const std::string path = request->local_uri_raw ? request->local_uri_raw : "";
    for (unsigned char c : path) {
      if (c < 0x20 || c == 0x7f) {
        SendError(conn, 400, "Bad Request", "a control character in the path");
        return 400;
      }
    }
    const bool page = path == "/" || (path.starts_with("/runs/") && path.size() > 6 &&
                                      path.find('/', 6) == std::string::npos);
    const bool is_api = path.starts_with("/api/");
    const bool download = path.starts_with("/runs/") && path.ends_with("/report.html");
    if (!page && !is_api && !download) {
      SendError(conn, 404, "Not Found", "nothing at " + path);
      return 404;
    }
    const Access access = Authorized(conn, request, page || download);
    if (access == Access::kNone) return 401;
    if (page) {
      if (method != "GET") return MethodNotAllowed(conn, "GET");
      Send(conn, 200, "OK", "text/html; charset=utf-8", shell);
      return 200;
    }
    if (download) {
      if (method != "GET") return MethodNotAllowed(conn, "GET");
      const std::string id = path.substr(6, path.size() - 6 - std::strlen("/report.html"));
      auto live = source->Get(id);
      if (!live) return NoRun(conn, id);
      if (!live->over) {
        SendError(conn, 409, "Conflict", "run " + id + " is not over: its report is not final");
        return 409;
      }
      Send(conn, 200, "OK", "text/html; charset=utf-8", FormatHtmlReport(live->report_json),
           "Content-Disposition: attachment; filename=\"loads-report.html\"\r\n");
      return 200;
    }
    if (path == "/api/runs") {
      if (method != "GET") return MethodNotAllowed(conn, "GET");
      Json runs = Json::array();
      for (const auto& e : source->List()) {
        runs.push_back({{"id", e.id},
                        {"state", e.state},
                        {"test", e.test},
                        {"started", IsoTime(e.started)},
                        {"hits", e.hits},
                        {"executions", e.executions},
                        {"active_users", e.active_users}});
      }
      SendJson(conn, 200, "OK", Json{{"runs", runs}});
      return 200;
    }
    constexpr std::string_view kRuns = "/api/runs/";
    if (!path.starts_with(kRuns)) {
      SendError(conn, 404, "Not Found", "nothing at " + path);
      return 404;
    }
    std::string id = path.substr(kRuns.size());
    std::string action;
    if (auto slash = id.find('/'); slash != std::string::npos) {
      action = id.substr(slash + 1);
      id.resize(slash);
    }
    if (action.empty()) {
      if (method != "GET") return MethodNotAllowed(conn, "GET");
      auto live = source->Get(id);
      if (!live) return NoRun(conn, id);
      Send(conn, 200, "OK", "application/json", LiveJson(*live));
      return 200;
    }
    if (action == "events") {
      if (method != "GET") return MethodNotAllowed(conn, "GET");
      return Stream(conn, id);
    }
    if (action == "stop") {
      if (method != "POST") return MethodNotAllowed(conn, "POST");
      // A form or image of another site cannot send a custom header; a script of another
      // site cannot either without a CORS preflight, which is never granted.
      const char* intent = mg_get_header(conn, "X-Loads-Action");
      if (intent == nullptr || std::string(intent) != "stop") {
        SendError(conn, 403, "Forbidden", "stopping a run needs the header X-Loads-Action: stop");
        return 403;
      }
      if (access != Access::kFull) {
        SendError(conn, 403, "Forbidden", "this token may only look; stopping needs the API token");
        return 403;
      }
      Status stopped = source->Stop(id);
      if (stopped.code() == StatusCode::kNotFound) return NoRun(conn, id);
      if (!stopped.ok()) {
        SendError(conn, 500, "Internal Server Error", stopped.message());
        return 500;
      }
      SendJson(conn, 200, "OK", Json{{"stopped", id}});
      return 200;
    }
    SendError(conn, 404, "Not Found", "nothing at " + path);
    return 404;
  }

  // Server-sent events: the run's report at most once a second while it changes, the final one
  // last; a comment every 15 s otherwise, so that a viewer that went away is noticed.
  int Stream(mg_connection* conn, const std::string& id) {
    if (streams.fetch_add(1) >= options.max_streams) {
      streams.fetch_sub(1);
      SendError(conn, 503, "Service Unavailable",
                "too many viewers at once (" + std::to_string(options.max_streams) + ")");
      return 503;
    }
    struct Release {
      std::atomic<int>* n;
      ~Release() { n->fetch_sub(1); }
    } release{&streams};
    auto live = source->Get(id);
    if (!live) return NoRun(conn, id);
    mg_printf(conn,
              "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n"
              "X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n");
    std::string sent;
    uint64_t seen = 0;
    auto last_write = std::chrono::steady_clock::now();
    while (true) {
      const std::string data = LiveJson(*live);
      if (data != sent) {
        // With the final report, the browser is told not to come back for an hour: nothing
        // more will come, and a local run's server is about to go.
        const std::string event = std::string(live->over ? "retry: 3600000\n" : "") +
                                  "event: report\ndata: " + data + "\n\n";
        if (mg_write(conn, event.data(), event.size()) <= 0) break;
        sent = data;
        last_write = std::chrono::steady_clock::now();
      } else if (std::chrono::steady_clock::now() - last_write > std::chrono::seconds(15)) {
        if (mg_write(conn, ":\n\n", 3) <= 0) break;
        last_write = std::chrono::steady_clock::now();
      }
      // When the server stops, what was sent last is what the source said last (a local run's
      // final report is told before the server stops).
      if (live->over || stopping.load()) break;
      // Once a second at most, and not before something changed.
      const auto next = std::chrono::steady_clock::now() + std::chrono::seconds(1);
      while (!stopping.load() && std::chrono::steady_clock::now() < next) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      if (!stopping.load()) seen = source->WaitForChange(seen, std::chrono::milliseconds(1000));
      live = source->Get(id);
      if (!live) {
        mg_printf(conn, "event: gone\ndata: {}\n\n");
        break;
      }
    }
    return 200;
  }

  int MethodNotAllowed(mg_connection* conn, const char* allowed) {
    SendError(conn, 405, "Method Not Allowed", std::string("use ") + allowed);
    return 405;
  }

  int NoRun(mg_connection* conn, const std::string& id) {
    SendError(conn, 404, "Not Found", "no run " + id);
    return 404;
  }
};

namespace {

int HandleRequest(mg_connection* conn, void* data) {
  auto* impl = static_cast<LivePageServer::Impl*>(data);
  // CivetWeb's threads have the stack its build chose (Debian's: 100 KiB), which formatting a
  // report can overrun (an AddressSanitizer build of the controller did): the request is served
  // on a thread of the default size, which this one waits for. A few requests a second at most.
  int status = 500;
  std::string error;
  try {
    std::thread([&] {
      try {
        status = impl->Handle(conn);
      } catch (const std::exception& e) {
        error = e.what();
      }
    }).join();
  } catch (const std::system_error& e) {
    SendError(conn, 503, "Service Unavailable", std::string("no thread for it: ") + e.what());
    return 503;
  }
  if (!error.empty()) {
    SendError(conn, 500, "Internal Server Error", error);
    return 500;
  }
  return status;
}

int LogMessage(const mg_connection* conn, const char* message) {
  const mg_context* context = mg_get_context(conn);
  auto* impl = static_cast<LivePageServer::Impl*>(mg_get_user_data(context));
  if (impl != nullptr) {
    std::lock_guard lock(impl->log_mu);
    impl->last_error = message;
  }
  return 1;  // CivetWeb writes nothing itself
}

}  // namespace

LivePageServer::LivePageServer(RunSource* source, Options options)
    : impl_(std::make_unique<Impl>()) {
  impl_->source = source;
  impl_->options = std::move(options);
}

LivePageServer::~LivePageServer() { Stop(); }

Status LivePageServer::Start() {
  const std::string& address = impl_->options.address;
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == address.size()) {
    return InvalidArgumentError("the live page's address must be HOST:PORT, not '" + address + "'");
  }
  // CivetWeb's "127.0.0.1:8080" or "[::1]:8080" is our HOST:PORT already.
  const std::string threads = std::to_string(impl_->options.max_streams + 8);
  const char* options[] = {
      "listening_ports", address.c_str(),     "num_threads", threads.c_str(), "request_timeout_ms",
      "10000",           "enable_keep_alive", "no",          nullptr};
  mg_callbacks callbacks{};
  callbacks.log_message = LogMessage;
  mg_init_data init{};
  init.callbacks = &callbacks;
  init.user_data = impl_.get();
  init.configuration_options = options;
  char text[256] = "";
  unsigned code = 0;
  mg_error_data error{};
  error.code = &code;
  error.text = text;
  error.text_buffer_size = sizeof(text);
  impl_->context = mg_start2(&init, &error);
  if (impl_->context == nullptr) {
    std::lock_guard lock(impl_->log_mu);
    return UnavailableError("cannot serve the live page on " + address + ": " +
                            (text[0] ? std::string(text) : impl_->last_error));
  }
  mg_set_request_handler(impl_->context, "/", HandleRequest, impl_.get());
  mg_server_port ports[4];
  const int n = mg_get_server_ports(impl_->context, 4, ports);
  port_ = n > 0 ? ports[0].port : 0;
  return OkStatus();
}

void LivePageServer::Stop() {
  if (impl_->context == nullptr) return;
  impl_->stopping.store(true);
  // The streams send what they have not sent yet (a final report) and end; CivetWeb refuses
  // every write once mg_stop has begun.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  while (impl_->streams.load() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  mg_stop(impl_->context);
  impl_->context = nullptr;
}

}  // namespace loads::common
