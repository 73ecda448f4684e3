#include "runner/options.h"

#include <charconv>
#include <cmath>
#include <functional>
#include <map>

#include "loads/common/url.h"

namespace loads::runner {
namespace {

constexpr int64_t kMaxUsers = 10'000'000;
constexpr int64_t kMaxHits = 1'000'000'000'000;
constexpr double kMaxSeconds = 366.0 * 24 * 3600;

std::optional<int64_t> ParseInt(const std::string& text) {
  int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

std::optional<double> ParseSeconds(const std::string& text) {
  double value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || !std::isfinite(value) ||
      value < 0.001 || value > kMaxSeconds) {
    return std::nullopt;
  }
  return value;
}

std::string Quote(const std::string& s) { return "'" + s + "'"; }

}  // namespace

std::optional<std::vector<int64_t>> ParseCycles(const std::string& text, int64_t max) {
  std::vector<int64_t> values;
  size_t start = 0;
  while (true) {
    const size_t colon = text.find(':', start);
    auto value = ParseInt(text.substr(start, colon - start));
    if (!value || *value < 1 || *value > max) return std::nullopt;
    values.push_back(*value);
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  return values;
}

std::string Usage() {
  return R"(usage: loads-runner [options] MODULE.Class.method
       loads-runner [options] SCENARIO.json
       loads-runner [options] --url URL

Runs a load test: every virtual user runs the test method (setUp, method, tearDown)
again and again, then a report is printed.

Load:
  -u, --users N[:N...]      virtual users; a colon list runs user cycles one after
                            the other (default 1)
      --hits N[:N...]       executions of the test per user, summed over the list
                            (default 1; not with --duration)
  -d, --duration SECONDS    each user cycle lasts this long, users looping the test
      --threads N           engine threads (default: the number of CPUs, at most
                            the number of users)
Test:
      --url URL             no test library: each execution GETs URL
      --test-runner CMD     an external runner: CMD ({test} = the test argument) runs
                            once per user and reports JSON events on its stdout
      --test-path DIR       where test libraries (MODULE.so) are found; repeatable;
                            then $LOADS_TEST_PATH (colon list), then the current folder
      --server-url URL      the target, as server_url() in tests
Network:
      --connect-timeout S   connect (and TLS handshake) timeout, seconds (default 10)
      --timeout S           read timeout of a request, seconds (default 30)
      --insecure            do not verify TLS certificates
Cluster:
      --controller HOST:PORT  run on a loads-controller's workers instead of locally
                            (the test library is shipped to them)
      --workers N           number of workers to spread the users over (default 1)
      --token-file FILE     the controller's API token (its first line)
      --project-name NAME, --user-id ID, --label KEY=VALUE
                            metadata kept with the run on the controller
      --loss-policy P       when a worker is lost: continue (default; the run is
                            marked degraded) or fail (the run stops and fails)
      --worker-cpu Q, --worker-memory Q
                            resource requests of the worker pods a Kubernetes
                            controller launches for this run (500m, 1Gi...)
      --detach              start the run on the controller, print its id and return
      --attach RUN_ID       watch a run of the controller and print its report
      --list-runs           list the controller's runs
      --stop RUN_ID         stop that run (only that one)
      --ping                the controller's version, endpoint and workers
      --check-cluster       one execution of --url on every idle worker
Output:
      --output json:FILE    also write the report as JSON to FILE
      --quiet               no progress bar and no report on stdout
      --version             print the version
  -h, --help                print this help

Exit status: 0 all executions succeeded, 1 some failed or errored, 2 bad command
line, 3 test library not found, 4 test library failed to load or is built for
another SDK, 5 no such test in the library, 6 the JSON report could not be
written, 7 the controller cannot be reached or refused the run, 70 internal
error, 130 interrupted (report printed).
)";
}

ParseResult ParseOptions(const std::vector<std::string>& args) {
  ParseResult result;
  RunnerOptions& o = result.options;
  bool hits_given = false;
  bool workers_given = false;
  std::vector<std::string> positional;

  auto fail = [&](std::string message) {
    result.ok = false;
    result.error = std::move(message);
    return result;
  };

  using Handler = std::function<std::optional<std::string>(const std::string&)>;
  struct Spec {
    bool takes_value;
    Handler handler;
  };
  auto invalid = [](const std::string& flag, const std::string& value, const char* expected) {
    return "invalid value for " + flag + ": " + Quote(value) + " (expected " + expected + ")";
  };
  // The option kinds: each parses and validates its value, then stores it.
  auto cycles = [&](const char* flag, int64_t max, const char* expected,
                    std::vector<int64_t>* target, bool* given) -> Spec {
    return {true, [=](const std::string& v) -> std::optional<std::string> {
              auto parsed = ParseCycles(v, max);
              if (!parsed) return invalid(flag, v, expected);
              *target = *parsed;
              if (given) *given = true;
              return std::nullopt;
            }};
  };
  auto seconds = [&](const char* flag, auto store) -> Spec {
    return {true, [=](const std::string& v) -> std::optional<std::string> {
              auto parsed = ParseSeconds(v);
              if (!parsed) return invalid(flag, v, "seconds >= 0.001");
              store(*parsed);
              return std::nullopt;
            }};
  };
  auto switch_on = [](bool* target) -> Spec {
    return {false, [=](const std::string&) -> std::optional<std::string> {
              *target = true;
              return std::nullopt;
            }};
  };
  const std::map<std::string, Spec> specs = {
      {"--users", cycles("--users", kMaxUsers,
                         "a positive integer or a colon list such as 10:20:30", &o.users, nullptr)},
      {"--hits", cycles("--hits", kMaxHits, "a positive integer or a colon list such as 10:20",
                        &o.hits, &hits_given)},
      {"--duration", seconds("--duration", [&o](double v) { o.duration = v; })},
      {"--connect-timeout",
       seconds("--connect-timeout", [&o](double v) { o.connect_timeout = v; })},
      {"--timeout", seconds("--timeout", [&o](double v) { o.timeout = v; })},
      {"--threads",
       {true,
        [&](const std::string& v) -> std::optional<std::string> {
          auto n = ParseInt(v);
          if (!n || *n < 1 || *n > 1024) return invalid("--threads", v, "1..1024");
          o.threads = static_cast<int>(*n);
          return std::nullopt;
        }}},
      {"--url",
       {true,
        [&](const std::string& v) -> std::optional<std::string> {
          std::string why;
          auto url = common::ParseUrl(v, &why);
          if (!url) return "invalid URL for --url: " + Quote(v) + " (" + why + ")";
          if (url->scheme != "http" && url->scheme != "https") {
            return "invalid URL for --url: " + Quote(v) + " (expected http:// or https://)";
          }
          o.url = v;
          return std::nullopt;
        }}},
      {"--test-runner",
       {true,
        [&](const std::string& v) -> std::optional<std::string> {
          if (v.empty()) return invalid("--test-runner", v, "a command");
          o.test_runner = v;
          return std::nullopt;
        }}},
      {"--test-path",
       {true,
        [&](const std::string& v) -> std::optional<std::string> {
          o.test_paths.push_back(v);
          return std::nullopt;
        }}},
      {"--server-url",
       {true,
        [&](const std::string& v) -> std::optional<std::string> {
          std::string why;
          if (!common::ParseUrl(v, &why)) {
            return "invalid URL for --server-url: " + Quote(v) + " (" + why + ")";
          }
          o.server_url = v;
          return std::nullopt;
        }}},
      {"--output",
       {true,
        [&](const std::string& v) -> std::optional<std::string> {
          if (!v.starts_with("json:") || v.size() == 5) return invalid("--output", v, "json:FILE");
          o.json_outputs.push_back(v.substr(5));
          return std::nullopt;
        }}},
      {"--controller",
       {true,
        [&](const std::string& v) -> std::optional<std::string> {
          const size_t colon = v.rfind(':');
          if (colon == std::string::npos || colon == 0 || colon + 1 == v.size()) {
            return invalid("--controller", v, "HOST:PORT");
          }
          o.controller = v;
          return std::nullopt;
        }}},
      {"--workers",
       {true,
        [&](const std::string& v) -> std::optional<std::string> {
          auto n = ParseInt(v);
          if (!n || *n < 1 || *n > 1000) return invalid("--workers", v, "1..1000");
          o.workers = static_cast<int>(*n);
          workers_given = true;
          return std::nullopt;
        }}},
      {"--attach",
       {true,
        [&](const std::string& v) -> std::optional<std::string> {
          if (v.empty()) return invalid("--attach", v, "a run id");
          o.attach = v;
          return std::nullopt;
        }}},
      {"--stop",
       {true,
        [&](const std::string& v) -> std::optional<std::string> {
          if (v.empty()) return invalid("--stop", v, "a run id");
          o.stop_run = v;
          return std::nullopt;
        }}},
      {"--loss-policy",
       {true,
        [&](const std::string& v) -> std::optional<std::string> {
          if (v != "continue" && v != "fail")
            return invalid("--loss-policy", v, "continue or fail");
          o.fail_on_worker_loss = v == "fail";
          return std::nullopt;
        }}},
      {"--worker-cpu",
       {true,
        [&](const std::string& v) -> std::optional<std::string> {
          if (v.empty()) return invalid("--worker-cpu", v, "a quantity such as 500m");
          o.worker_cpu = v;
          return std::nullopt;
        }}},
      {"--worker-memory",
       {true,
        [&](const std::string& v) -> std::optional<std::string> {
          if (v.empty()) return invalid("--worker-memory", v, "a quantity such as 512Mi");
          o.worker_memory = v;
          return std::nullopt;
        }}},
      {"--token-file",
       {true,
        [&](const std::string& v) -> std::optional<std::string> {
          if (v.empty()) return invalid("--token-file", v, "a file");
          o.token_file = v;
          return std::nullopt;
        }}},
      {"--project-name",
       {true,
        [&](const std::string& v) -> std::optional<std::string> {
          o.metadata.emplace_back("project_name", v);
          return std::nullopt;
        }}},
      {"--user-id",
       {true,
        [&](const std::string& v) -> std::optional<std::string> {
          o.metadata.emplace_back("user_id", v);
          return std::nullopt;
        }}},
      {"--label",
       {true,
        [&](const std::string& v) -> std::optional<std::string> {
          const size_t eq = v.find('=');
          if (eq == std::string::npos || eq == 0) return invalid("--label", v, "KEY=VALUE");
          o.metadata.emplace_back(v.substr(0, eq), v.substr(eq + 1));
          return std::nullopt;
        }}},
      {"--detach", switch_on(&o.detach)},
      {"--list-runs", switch_on(&o.list_runs)},
      {"--ping", switch_on(&o.ping)},
      {"--check-cluster", switch_on(&o.check_cluster)},
      {"--insecure", switch_on(&o.insecure)},
      {"--quiet", switch_on(&o.quiet)},
      {"--help", switch_on(&o.help)},
      {"--version", switch_on(&o.version)},
  };
  const std::map<std::string, std::string> short_names = {
      {"-u", "--users"}, {"-d", "--duration"}, {"-h", "--help"}};

  for (size_t i = 0; i < args.size(); ++i) {
    std::string arg = args[i];
    if (arg == "--") {
      positional.insert(positional.end(), args.begin() + i + 1, args.end());
      break;
    }
    if (arg.size() < 2 || arg[0] != '-' || (arg[1] >= '0' && arg[1] <= '9')) {
      positional.push_back(arg);
      continue;
    }
    std::string name = arg;
    std::optional<std::string> value;
    if (arg.starts_with("--")) {
      const size_t eq = arg.find('=');
      if (eq != std::string::npos) {
        name = arg.substr(0, eq);
        value = arg.substr(eq + 1);
      }
    } else {
      name = arg.substr(0, 2);
      if (arg.size() > 2) value = arg.substr(2);
      auto it = short_names.find(name);
      if (it == short_names.end()) return fail("unknown option " + Quote(arg));
      name = it->second;
    }
    auto spec = specs.find(name);
    if (spec == specs.end()) return fail("unknown option " + Quote(name));
    if (spec->second.takes_value) {
      if (!value) {
        if (i + 1 >= args.size()) return fail("option " + name + " needs a value");
        value = args[++i];
      }
    } else if (value) {
      return fail("option " + name + " takes no value");
    }
    if (auto error = spec->second.handler(value.value_or(""))) return fail(*error);
  }
  if (o.help || o.version) {
    result.ok = true;
    return result;
  }
  if (positional.size() > 1) return fail("too many arguments: " + Quote(positional[1]));
  if (!positional.empty()) o.test = positional[0];
  const int operations =
      !o.attach.empty() + !o.stop_run.empty() + o.list_runs + o.ping + o.check_cluster;
  if (operations > 1) {
    return fail("give only one of --attach, --stop, --list-runs, --ping, --check-cluster");
  }
  if (!o.token_file.empty() && o.controller.empty()) return fail("--token-file needs --controller");
  if (!(o.worker_cpu.empty() && o.worker_memory.empty()) && o.controller.empty()) {
    return fail("--worker-cpu and --worker-memory need --controller");
  }
  if ((operations > 0 || o.detach) && o.controller.empty()) {
    return fail("cluster operations need --controller HOST:PORT");
  }
  if (o.check_cluster && o.url.empty()) {
    return fail("--check-cluster needs --url, the target of the smoke run");
  }
  if (operations > 0 && !o.check_cluster) {
    if (!o.test.empty() || !o.url.empty()) return fail("a cluster operation takes no test");
    result.ok = true;
    return result;
  }
  if (!o.test_runner.empty()) {
    if (!o.url.empty()) return fail("give either --test-runner or --url, not both");
    // The seed's {test}: the positional argument, if any, is passed to the command.
    for (size_t at; (at = o.test_runner.find("{test}")) != std::string::npos;) {
      o.test_runner.replace(at, 6, o.test);
    }
    o.test.clear();
  } else if (o.test.empty() && o.url.empty()) {
    return fail("no test given (expected MODULE.Class.method or --url URL)");
  }
  if (!o.test.empty() && !o.url.empty()) {
    return fail("give either a test (" + o.test + ") or --url, not both");
  }
  if (hits_given && o.duration) return fail("--hits and --duration cannot be used together");
  if (workers_given && o.controller.empty()) return fail("--workers needs --controller");
  if (o.duration) o.hits.clear();
  result.ok = true;
  return result;
}

}  // namespace loads::runner
