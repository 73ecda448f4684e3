// External runners: a test written in any language, run as one process per virtual user that
// reports its events as JSON lines on stdout (docs/external-runners.md).

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/read_until.hpp>
#include <cstring>
#include <nlohmann/json.hpp>
#include <numeric>

#include "loads/common/process.h"
#include "loads/common/url.h"
#include "loads/worker/engine.h"
#include "worker/src/fiber.h"
#include "worker/src/user_context.h"

extern char** environ;

namespace loads::worker {
namespace {

namespace asio = boost::asio;
using internal::UserContext;

std::string& ExternalCommand() {
  static std::string command;
  return command;
}

// The command runs in a process group of its own (the shell and what it starts), so that
// stopping it stops all of them.
void KillChild(void* pid) { ::kill(-*static_cast<pid_t*>(pid), SIGTERM); }

common::HitError ErrorKind(const std::string& name) {
  for (int kind = 1; kind < common::kHitErrorCount; ++kind) {
    if (common::HitErrorName(static_cast<common::HitError>(kind)) == name) {
      return static_cast<common::HitError>(kind);
    }
  }
  return common::HitError::kNetwork;
}

// Counts one event line; returns false if it is not a known event.
bool Record(UserContext& ctx, const std::string& line) {
  const auto event = nlohmann::json::parse(line, nullptr, false);
  if (!event.is_object() || event.size() != 1) return false;
  const std::string kind = event.begin().key();
  const auto& body = event.begin().value();
  if (kind == "hit" && body.is_object()) {
    for (const char* field : {"method", "url", "name"}) {
      if (body.contains(field) && !body[field].is_string()) return false;
    }
    const std::string method = body.value("method", "GET");
    // Methods become metric labels: only HTTP tokens, so that a typo cannot mint garbage series.
    if (!common::IsHttpMethod(method)) return false;
    const std::string url = body.value("url", "");
    const std::string name = body.value("name", method + " " + url);
    if (body.contains("error")) {
      if (!body["error"].is_string()) return false;
      ctx.RecordHit(name, method, 0, ErrorKind(body["error"].get<std::string>()), 0);
      return true;
    }
    if (!body.contains("status") || !body["status"].is_number_integer() ||
        !body.contains("elapsed") || !body["elapsed"].is_number() ||
        body["elapsed"].get<double>() < 0) {
      return false;
    }
    ctx.RecordHit(name, method, body["status"].get<int>(), common::HitError::kNone,
                  static_cast<uint64_t>(body["elapsed"].get<double>() * 1e9));
    return true;
  }
  if (kind == "execution" && body.is_object()) {
    const std::string outcome = body.value("outcome", "");
    const std::string message = body.value("message", "");
    if (outcome == "success") {
      ctx.RecordExecution(common::Outcome::kSuccess, "");
    } else if (outcome == "failure") {
      ctx.RecordExecution(common::Outcome::kFailure, "AssertionError: " + message);
    } else if (outcome == "error") {
      ctx.RecordExecution(common::Outcome::kError, message);
    } else {
      return false;
    }
    return true;
  }
  if (kind == "counter" && body.is_object() && body.contains("name") && body["name"].is_string()) {
    ctx.stats().IncrCounter(body["name"].get<std::string>(), body.value("value", int64_t{1}));
    return true;
  }
  if (kind == "ws" && body.is_object()) {
    auto& s = ctx.stats();
    s.ws_opened += body.value("opened", uint64_t{0});
    s.ws_closed += body.value("closed", uint64_t{0});
    s.ws_messages_received += body.value("messages_received", uint64_t{0});
    s.ws_bytes_received += body.value("bytes_received", uint64_t{0});
    s.ws_messages_sent += body.value("messages_sent", uint64_t{0});
    s.ws_bytes_sent += body.value("bytes_sent", uint64_t{0});
    return true;
  }
  return false;
}

class ExternalTest : public TestCase {
 public:
  ExternalTest() : ctx_(internal::ConstructingContext()) {}

  void Run() {
    const auto& options = ctx_->options();
    std::vector<std::string> env_storage;
    for (char** e = environ; *e; ++e) {
      if (std::string_view(*e).starts_with("LOADS_")) continue;
      env_storage.emplace_back(*e);
    }
    env_storage.push_back("LOADS_RUN_ID=" + options.run_id);
    env_storage.push_back("LOADS_TOTAL_USERS=" + std::to_string(ctx_->cycle_users()));
    env_storage.push_back("LOADS_CURRENT_USER=" + std::to_string(ctx_->user_index() + 1));
    if (options.duration) {
      env_storage.push_back("LOADS_DURATION=" + std::to_string(*options.duration));
    } else {
      env_storage.push_back(
          "LOADS_TOTAL_HITS=" +
          std::to_string(std::accumulate(options.hits.begin(), options.hits.end(), int64_t{0})));
    }
    env_storage.push_back("LOADS_SERVER_URL=" + options.server_url);
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("external runner: pipe failed");
    pid_t pid = 0;
    const int spawned = common::Spawn({"/bin/sh", "-c", ExternalCommand()}, &env_storage, fds[1],
                                      /*own_group=*/true, &pid);
    ::close(fds[1]);
    if (spawned != 0) {
      ::close(fds[0]);
      throw std::runtime_error("external runner: cannot start /bin/sh: " +
                               std::string(std::strerror(spawned)));
    }
    asio::posix::stream_descriptor out(*ctx_->thread().io, fds[0]);
    // Ctrl-C (or a stop) ends the process; a timed cycle gives it 5 s beyond its end.
    const auto deadline =
        options.duration
            ? std::chrono::steady_clock::now() +
                  std::chrono::milliseconds(static_cast<int64_t>((*options.duration + 5) * 1000))
            : std::chrono::steady_clock::time_point::max();
    ctx_->ArmDeadline(deadline, &KillChild, &pid);
    std::string buffer;
    uint64_t unreadable = 0;
    while (true) {
      boost::system::error_code ec;
      const size_t n = internal::Await([&](internal::Yield& y) {
        return asio::async_read_until(out, asio::dynamic_buffer(buffer), '\n', y[ec]);
      });
      if (ec) break;  // the process closed its stdout (or was killed)
      const std::string line = buffer.substr(0, n - 1);
      buffer.erase(0, n);
      if (!line.empty() && !Record(*ctx_, line)) ++unreadable;
    }
    ctx_->DisarmDeadline();
    // It has closed its stdout: wait for it, suspending only this user.
    int status = 0;
    for (int i = 0; i < 500 && ::waitpid(pid, &status, WNOHANG) == 0; ++i) {
      sleep(std::chrono::milliseconds(10));
    }
    if (::waitpid(pid, &status, WNOHANG) == 0) {
      ::kill(-pid, SIGKILL);
      ::waitpid(pid, &status, 0);
    }
    if (unreadable) ctx_->stats().IncrCounter("loads.external_unreadable_lines", unreadable);
    if (ctx_->cancelled()) return;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      throw std::runtime_error("external runner exited with " +
                               (WIFEXITED(status) ? "status " + std::to_string(WEXITSTATUS(status))
                                                  : "signal " + std::to_string(WTERMSIG(status))));
    }
  }

 private:
  UserContext* ctx_;
};

}  // namespace

TestSpec MakeExternalTest(const std::string& command) {
  ExternalCommand() = command;
  TestSpec spec{
      "external: " + command,
      []() -> std::unique_ptr<TestCase> { return std::make_unique<ExternalTest>(); },
      [](TestCase& test) { static_cast<ExternalTest&>(test).Run(); },
  };
  spec.once_per_user = true;
  return spec;
}

}  // namespace loads::worker
