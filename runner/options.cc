#include "runner/options.h"

#include <functional>
#include <map>
#include <set>

#include "loads/common/run_spec.h"
#include "loads/common/target_allow.h"
#include "loads/common/threshold.h"

namespace loads::runner {
namespace {

std::string Quote(const std::string& s) { return "'" + s + "'"; }

constexpr char kOneTest[] =
    "give one test: MODULE.Class.method, SCENARIO.json, --url or --test-runner";

// The runner's own flags: where the test and the report are, and the cluster operations. The
// run's flags come from loads::spec::RunOptions().
struct RunnerFlag {
  const char* flag;
  const char* value;  // "" for a switch
  const char* help;
  std::function<Status(const std::string&, RunnerOptions*)> set;
};

Status Expected(const std::string& what) { return InvalidArgumentError("expected " + what); }

const std::vector<RunnerFlag>& RunnerFlags() {
  static const std::vector<RunnerFlag> flags = {
      {"--test-path", "DIR",
       "where test libraries (MODULE.so) are found; repeatable; then $LOADS_TEST_PATH, then .",
       [](const std::string& v, RunnerOptions* o) {
         o->test_paths.push_back(v);
         return OkStatus();
       }},
      {"--output", "FORMAT:FILE",
       "also write the report to FILE: json:FILE (the JSON report), junit:FILE (the verdicts "
       "as JUnit XML), csv:FILE (the run second by second) or html:FILE (a page with charts that "
       "needs nothing else to be viewed); repeatable",
       [](const std::string& v, RunnerOptions* o) {
         if (v.starts_with("json:") && v.size() > 5) {
           o->json_outputs.push_back(v.substr(5));
         } else if (v.starts_with("junit:") && v.size() > 6) {
           o->junit_outputs.push_back(v.substr(6));
         } else if (v.starts_with("csv:") && v.size() > 4) {
           o->csv_outputs.push_back(v.substr(4));
         } else if (v.starts_with("html:") && v.size() > 5) {
           o->html_outputs.push_back(v.substr(5));
         } else {
           return Expected("json:FILE, junit:FILE, csv:FILE or html:FILE");
         }
         return OkStatus();
       }},
      {"--quiet", "", "no progress bar and no report on stdout",
       [](const std::string&, RunnerOptions* o) {
         o->quiet = true;
         return OkStatus();
       }},
      {"--allow-target", "PATTERN",
       "send requests only to these hosts (host, host:port, *.domain, an address or a network "
       "such as 10.0.0.0/8); others are refused as forbidden_target errors; repeatable",
       [](const std::string& v, RunnerOptions* o) {
         auto parsed = common::TargetAllowList::Parse({v});
         if (!parsed.ok()) return Expected("host, host:port, *.domain, an address or a network");
         o->allow_targets.push_back(v);
         return OkStatus();
       }},
      {"--web", "HOST:PORT",
       "serve a live page of the run (charts updated every second, a stop button) on "
       "http://HOST:PORT/ while it runs; loopback only (port 0: any free port)",
       [](const std::string& v, RunnerOptions* o) {
         const size_t colon = v.rfind(':');
         if (colon == std::string::npos || colon == 0 || colon + 1 == v.size()) {
           return Expected("HOST:PORT, such as 127.0.0.1:8089");
         }
         const std::string host = v.substr(0, colon);
         // No token guards it: only this machine may see it, or stop the run.
         if (host != "127.0.0.1" && host != "localhost" && host != "[::1]") {
           return Expected("a loopback address (127.0.0.1, localhost or [::1])");
         }
         o->web = v;
         return OkStatus();
       }},
      {"--smtp", "HOST:PORT",
       "the mail server of --notify email:ADDRESS (plain SMTP, no login) for local runs",
       [](const std::string& v, RunnerOptions* o) {
         const size_t colon = v.rfind(':');
         if (colon == std::string::npos || colon == 0 || colon + 1 == v.size() ||
             v.find_first_of(" \r\n/@") != std::string::npos) {
           return Expected("HOST:PORT, such as 127.0.0.1:25");
         }
         o->notify.smtp = v;
         return OkStatus();
       }},
      {"--smtp-from", "ADDRESS", "the sender of --notify mails (default loads@localhost)",
       [](const std::string& v, RunnerOptions* o) {
         if (!common::ParseNotifyTarget("email:" + v).ok()) return Expected("a mail address");
         o->notify.smtp_from = v;
         return OkStatus();
       }},
      {"--notify-timeout", "S",
       "how long each attempt to notify may take (seconds, 0.1 to 60; default 5); a target is "
       "tried 3 times",
       [](const std::string& v, RunnerOptions* o) {
         auto seconds = spec::ParseSeconds(v, 0.1, 60);
         if (!seconds) return Expected("seconds, 0.1 to 60");
         o->notify.timeout = std::chrono::milliseconds(static_cast<int64_t>(*seconds * 1000));
         return OkStatus();
       }},
      {"--stuck-limit", "S",
       "report a user that holds its engine thread this long without yielding (a busy loop, a "
       "blocking call); 0: never (default 2)",
       [](const std::string& v, RunnerOptions* o) {
         auto seconds = spec::ParseSeconds(v, 0, 3600);
         if (!seconds) return Expected("seconds, 0 to 3600");
         o->stuck_limit = std::chrono::milliseconds(static_cast<int64_t>(*seconds * 1000));
         return OkStatus();
       }},
      {"--stop-timeout", "S",
       "after Ctrl-C (or past the planned end, with a stuck user), how long the engine has to "
       "finish before it is killed and the report printed with what it sent (default 5)",
       [](const std::string& v, RunnerOptions* o) {
         auto seconds = spec::ParseSeconds(v, 0.1, 3600);
         if (!seconds) return Expected("seconds, 0.1 to 3600");
         o->stop_timeout = std::chrono::milliseconds(static_cast<int64_t>(*seconds * 1000));
         return OkStatus();
       }},
      {"--controller", "HOST:PORT",
       "run on a loads-controller's workers instead of locally (the test library is shipped)",
       [](const std::string& v, RunnerOptions* o) {
         const size_t colon = v.rfind(':');
         if (colon == std::string::npos || colon == 0 || colon + 1 == v.size()) {
           return Expected("HOST:PORT");
         }
         o->controller = v;
         return OkStatus();
       }},
      {"--token-file", "FILE", "the controller's API token (its first line)",
       [](const std::string& v, RunnerOptions* o) {
         if (v.empty()) return Expected("a file");
         o->token_file = v;
         return OkStatus();
       }},
      {"--tls-ca", "FILE",
       "talk to the controller over TLS, trusting the CAs of FILE (PEM) for its certificate",
       [](const std::string& v, RunnerOptions* o) {
         if (v.empty()) return Expected("a file");
         o->tls_ca = v;
         return OkStatus();
       }},
      {"--tls-cert", "FILE", "mTLS: this client's certificate chain (PEM), with --tls-key",
       [](const std::string& v, RunnerOptions* o) {
         if (v.empty()) return Expected("a file");
         o->tls_cert = v;
         return OkStatus();
       }},
      {"--tls-key", "FILE", "mTLS: the private key of --tls-cert (PEM)",
       [](const std::string& v, RunnerOptions* o) {
         if (v.empty()) return Expected("a file");
         o->tls_key = v;
         return OkStatus();
       }},
      {"--reconnect-timeout", "S",
       "how long to wait for an unreachable controller (restarting) before giving up (default "
       "300)",
       [](const std::string& v, RunnerOptions* o) {
         auto seconds = spec::ParseSeconds(v, 1, 86400);
         if (!seconds) return Expected("seconds, 1 to 86400");
         o->reconnect_timeout = std::chrono::seconds(static_cast<int64_t>(*seconds));
         return OkStatus();
       }},
      {"--detach", "", "start the run on the controller, print its id and return",
       [](const std::string&, RunnerOptions* o) {
         o->detach = true;
         return OkStatus();
       }},
      {"--attach", "RUN_ID", "watch a run of the controller and print its report",
       [](const std::string& v, RunnerOptions* o) {
         if (v.empty()) return Expected("a run id");
         o->attach = v;
         return OkStatus();
       }},
      {"--list-runs", "", "list the controller's runs, newest first",
       [](const std::string&, RunnerOptions* o) {
         o->list_runs = true;
         return OkStatus();
       }},
      {"--stop", "RUN_ID", "stop that run (only that one)",
       [](const std::string& v, RunnerOptions* o) {
         if (v.empty()) return Expected("a run id");
         o->stop_run = v;
         return OkStatus();
       }},
      {"--ping", "", "the controller's version, endpoint and workers",
       [](const std::string&, RunnerOptions* o) {
         o->ping = true;
         return OkStatus();
       }},
      {"--check-cluster", "", "one execution of --url on every idle worker",
       [](const std::string&, RunnerOptions* o) {
         o->check_cluster = true;
         return OkStatus();
       }},
      {"--version", "", "print the version",
       [](const std::string&, RunnerOptions* o) {
         o->version = true;
         return OkStatus();
       }},
      {"--help", "", "print this help",
       [](const std::string&, RunnerOptions* o) {
         o->help = true;
         return OkStatus();
       }},
  };
  return flags;
}

// Run options that only mean something on a controller.
const std::set<std::string>& ClusterOnly() {
  static const std::set<std::string> flags = {"--workers",       "--loss-policy", "--worker-cpu",
                                              "--worker-memory", "--tls-ca",      "--tls-cert",
                                              "--tls-key"};
  return flags;
}

}  // namespace

std::string Usage() {
  std::string out =
      "usage: loads-runner [options] MODULE.Class.method\n"
      "       loads-runner [options] SCENARIO.json\n"
      "       loads-runner [options] --url URL\n"
      "\n"
      "Runs a load test: every virtual user runs the test method (setUp, method, tearDown)\n"
      "again and again, then a report is printed.\n"
      "\n"
      "Run (the same on this machine and on a controller):\n";
  const auto line = [&](std::string flag, const std::string& help) {
    if (flag.size() < 26)
      flag.resize(26, ' ');
    else
      flag += "\n" + std::string(26, ' ');
    out += "  " + flag + help + "\n";
  };
  for (const auto& o : spec::RunOptions()) {
    std::string flag = std::string(*o.short_flag ? std::string(o.short_flag) + ", " : "    ") +
                       o.flag + (*o.value ? std::string(" ") + o.value : "");
    std::string help = o.help;
    if (*o.fallback) help += std::string(" (default ") + o.fallback + ")";
    line(flag, help);
  }
  out += "Runner:\n";
  for (const auto& f : RunnerFlags()) {
    line(std::string("    ") + f.flag + (*f.value ? std::string(" ") + f.value : ""), f.help);
  }
  out +=
      "\n"
      "Exit status: 0 all executions succeeded, 1 some failed or errored, or the run failed,\n"
      "2 bad command line, 3 test library or scenario not found, 4 test library failed to\n"
      "load or is built for another SDK, 5 no such test in the library, 6 the JSON report\n"
      "could not be written, 7 the controller cannot be reached or refused the run, 8 the\n"
      "run is partial (a worker was lost; its results from then on are missing), 9 the\n"
      "engine crashed or was killed stuck (report printed with what it had sent), 10 a\n"
      "threshold failed (with --threshold, the thresholds decide: 0 or 10), 70 internal\n"
      "error, 130 interrupted (report printed).\n";
  return out;
}

StatusOr<RunnerOptions> ParseOptions(const std::vector<std::string>& args) {
  RunnerOptions o;
  std::vector<std::string> positional;
  std::set<std::string> given;
  std::map<std::string, std::string> short_names = {{"-h", "--help"}};
  for (const auto& option : spec::RunOptions()) {
    if (*option.short_flag) short_names[option.short_flag] = option.flag;
  }
  const auto fail = [](const std::string& message) { return InvalidArgumentError(message); };

  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--") {
      positional.insert(positional.end(), args.begin() + static_cast<std::ptrdiff_t>(i) + 1,
                        args.end());
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
    const spec::RunOption* run_option = nullptr;
    for (const auto& option : spec::RunOptions()) {
      if (name == option.flag) run_option = &option;
    }
    const RunnerFlag* runner_flag = nullptr;
    for (const auto& flag : RunnerFlags()) {
      if (name == flag.flag) runner_flag = &flag;
    }
    if (!run_option && !runner_flag) return fail("unknown option " + Quote(name));
    const bool takes_value = run_option ? *run_option->value : *runner_flag->value;
    if (takes_value) {
      if (!value) {
        if (i + 1 >= args.size()) return fail("option " + name + " needs a value");
        value = args[++i];
      }
    } else if (value) {
      return fail("option " + name + " takes no value");
    }
    // The test's source is a oneof: a second one would replace the first without a word.
    const std::string field = run_option ? run_option->field : "";
    if ((field == "url" || field == "external_command") &&
        o.spec.source_case() != v1::RunSpec::SOURCE_NOT_SET && !o.given_fields.count(field)) {
      return fail(kOneTest);
    }
    const Status set = run_option ? run_option->parse(value.value_or(""), &o.spec)
                                  : runner_flag->set(value.value_or(""), &o);
    if (!set.ok()) {
      return fail("invalid value for " + name + ": " + Quote(value.value_or("")) + " (" +
                  set.message() + ")");
    }
    given.insert(name);
    if (run_option) o.given_fields.insert(run_option->field);
  }
  if (o.help || o.version) return o;
  if (positional.size() > 1) return fail("too many arguments: " + Quote(positional[1]));
  const int operations =
      !o.attach.empty() + !o.stop_run.empty() + o.list_runs + o.ping + o.check_cluster;
  if (operations > 1) {
    return fail("give only one of --attach, --stop, --list-runs, --ping, --check-cluster");
  }
  if (o.controller.empty()) {
    if (!o.token_file.empty()) return fail("--token-file needs --controller");
    for (const auto& flag : ClusterOnly()) {
      if (given.count(flag)) return fail(flag + " needs --controller");
    }
    if (operations > 0 || o.detach) return fail("cluster operations need --controller HOST:PORT");
    for (const std::string& text : o.spec.notify()) {
      if (text.starts_with("email:") && o.notify.smtp.empty()) {
        return fail("--notify " + text + " needs --smtp HOST:PORT (the mail server)");
      }
    }
  } else {
    // A controller's workers run their engine in their own process, under their own limits.
    for (const std::string flag : {"--stuck-limit", "--stop-timeout"}) {
      if (given.count(flag))
        return fail(flag + " applies to local runs only, not with --controller");
    }
    for (const std::string flag : {"--smtp", "--smtp-from", "--notify-timeout"}) {
      if (given.count(flag)) {
        return fail(flag +
                    " applies to local runs only: a controller's runs are told by the "
                    "controller (loads-controller " +
                    flag + ")");
      }
    }
    if (o.tls_cert.empty() != o.tls_key.empty())
      return fail("--tls-cert and --tls-key go together");
    if (!o.tls_cert.empty() && o.tls_ca.empty()) {
      return fail("--tls-cert needs --tls-ca (a client certificate is only sent over TLS)");
    }
    if (given.count("--allow-target")) {
      return fail(
          "--allow-target applies to local runs only: a controller's allow-list is its "
          "own (loads-controller --allow-target)");
    }
    if (given.count("--web")) {
      return fail(
          "--web applies to local runs only: a controller serves its own live page "
          "(loads-controller --web)");
    }
  }
  if (o.check_cluster && o.spec.url().empty()) {
    return fail("--check-cluster needs --url, the target of the smoke run");
  }
  if (operations > 0 && !o.check_cluster) {
    if (!positional.empty() || !o.spec.url().empty())
      return fail("a cluster operation takes no test");
    return o;
  }
  const std::string test = positional.empty() ? "" : positional[0];
  if (!o.spec.external_command().empty()) {
    // The seed's {test}: the positional argument, if any, is passed to the command.
    std::string command = o.spec.external_command();
    for (size_t at; (at = command.find("{test}")) != std::string::npos;) {
      command.replace(at, 6, test);
    }
    o.spec.set_external_command(command);
  } else if (!test.empty() && !o.spec.url().empty()) {
    return fail(kOneTest);
  } else if (test.ends_with(".json")) {
    o.scenario_path = test;
  } else if (!test.empty()) {
    o.spec.set_test(test);
  }
  // The closed model's defaults (one user, one execution) unless a rate or stages say how hard.
  // A scenario file's `load` object may say it too: its run is checked once the file is read.
  if (!o.scenario_path.empty()) return o;
  spec::ApplyDefaults(&o.spec);
  const Status valid =
      spec::ValidateRunSpec(o.spec, {.naming = spec::Naming::kFlags, .library_required = false});
  if (!valid.ok()) return valid;
  return o;
}

}  // namespace loads::runner
