#include "loads/common/run_spec.h"

#include <google/protobuf/unknown_field_set.h>

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstring>
#include <map>
#include <numeric>
#include <regex>

#include "loads/common/load_model.h"
#include "loads/common/notify.h"
#include "loads/common/scenario.h"
#include "loads/common/threshold.h"
#include "loads/common/url.h"

namespace loads::spec {
namespace {

std::optional<int64_t> ParseInt(const std::string& text) {
  int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

Status Expected(const std::string& what) { return InvalidArgumentError("expected " + what); }

// The kinds of option values: each parses its text, checks its bounds and stores it.
RunOption::ParseFn Cycles(int64_t max, const char* expected,
                          google::protobuf::RepeatedField<int64_t>* (v1::RunSpec::*field)()) {
  return [=](const std::string& text, v1::RunSpec* spec) {
    auto values = ParseCycles(text, max);
    if (!values || values->size() > kMaxCycles) return Expected(expected);
    (spec->*field)()->Assign(values->begin(), values->end());
    return OkStatus();
  };
}

// A length of time in [min, max] seconds, into a Duration field.
RunOption::ParseFn Length(double min, double max, const char* expected,
                          google::protobuf::Duration* (v1::RunSpec::*field)()) {
  return [=](const std::string& text, v1::RunSpec* spec) {
    auto seconds = ParseSeconds(text, min, max);
    if (!seconds) return Expected(expected);
    *(spec->*field)() = ToDuration(*seconds);
    return OkStatus();
  };
}

RunOption::ParseFn Count(int max, void (v1::RunSpec::*set)(int32_t)) {
  return [=](const std::string& text, v1::RunSpec* spec) {
    auto n = ParseInt(text);
    if (!n || *n < 1 || *n > max) return Expected("1.." + std::to_string(max));
    (spec->*set)(static_cast<int32_t>(*n));
    return OkStatus();
  };
}

RunOption::ParseFn Metadata(const char* key) {
  return [=](const std::string& text, v1::RunSpec* spec) {
    (*spec->mutable_metadata())[key] = text;
    return OkStatus();
  };
}

bool IsIdentifier(const std::string& s) {
  if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0]))) return false;
  for (unsigned char c : s) {
    if (!std::isalnum(c) && c != '_') return false;
  }
  return true;
}

bool Printable(const std::string& s) {
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) return false;
  }
  return true;
}

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

std::optional<double> ParseSeconds(const std::string& text, double min, double max) {
  double value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || !std::isfinite(value) ||
      value < min || value > max) {
    return std::nullopt;
  }
  return value;
}

bool IsResourceQuantity(const std::string& text) {
  // Kubernetes' grammar (a sign, digits with an optional point, a binary or decimal SI suffix or
  // an exponent), without the minus sign: a request cannot be negative. Helm prints a number
  // value as 5.36870912e+08, which is one.
  static const std::regex kQuantity(
      R"(^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([KMGTPE]i|[numkMGTPE]|[eE][+-]?[0-9]+)?$)");
  return text.size() <= 32 && std::regex_match(text, kQuantity);
}

double ResourceQuantityValue(const std::string& text) {
  size_t end = 0;
  while (end < text.size() && (std::isdigit(static_cast<unsigned char>(text[end])) ||
                               text[end] == '.' || text[end] == '+')) {
    ++end;
  }
  double value = std::strtod(text.substr(0, end).c_str(), nullptr);
  const std::string suffix = text.substr(end);
  static const std::map<std::string, double> kScale = {
      {"n", 1e-9},    {"u", 1e-6},    {"m", 1e-3},    {"k", 1e3},     {"M", 1e6},
      {"G", 1e9},     {"T", 1e12},    {"P", 1e15},    {"E", 1e18},    {"Ki", 0x1p10},
      {"Mi", 0x1p20}, {"Gi", 0x1p30}, {"Ti", 0x1p40}, {"Pi", 0x1p50}, {"Ei", 0x1p60}};
  if (suffix.empty()) return value;
  // "E" and "Ei" are suffixes; only an "e" or "E" followed by more is an exponent.
  if (auto it = kScale.find(suffix); it != kScale.end()) return value * it->second;
  return value * std::pow(10.0, std::strtod(suffix.c_str() + 1, nullptr));
}

const std::vector<RunOption>& RunOptions() {
  static const std::vector<RunOption> options = {
      {"--users", "-u", "users", "N[:N...]",
       "virtual users; a colon list runs user cycles one after the other",
       "1..10000000 each, "
       "at most 1000 cycles",
       "1",
       Cycles(kMaxUsers, "a positive integer or a colon list such as 10:20:30",
              &v1::RunSpec::mutable_users),
       "users"},
      {"--hits", "", "hits", "N[:N...]",
       "executions of the test per user, summed over the list (not with --duration)",
       "1..1000000000000 each", "1",
       Cycles(kMaxHits, "a positive integer or a colon list such as 10:20",
              &v1::RunSpec::mutable_hits),
       "hits"},
      {"--duration", "-d", "duration", "SECONDS", "each user cycle lasts this long, users looping",
       "0.001..31622400 (366 days)", "",
       Length(0.001, kMaxSeconds, "seconds, 0.001 to 31622400", &v1::RunSpec::mutable_duration),
       "duration"},
      {"--stages", "", "stages", "D:N[,D:N...]",
       "ramp the users linearly to each target over each duration (30s:100,1m:100,30s:0); "
       "closed model, from -u or 0",
       "durations with s, m or h; targets 0..10000000", "",
       [](const std::string& text, v1::RunSpec* spec) {
         auto stages = common::ParseStages(text);
         if (!stages.ok()) {
           return Expected("stages such as 30s:100,1m:100 (" + stages.status().message() + ")");
         }
         spec->clear_stages();
         for (const auto& stage : *stages) {
           auto* out = spec->add_stages();
           *out->mutable_duration() = ToDuration(stage.seconds);
           out->set_target(stage.target);
         }
         return OkStatus();
       },
       "stages"},
      {"--rate", "", "rate", "R",
       "open model: start R executions per second, whatever the response times (with -d, or "
       "the rate --rate-stages starts from)",
       "0.001..10000000 per second", "",
       [](const std::string& text, v1::RunSpec* spec) {
         auto rate = ParseSeconds(text, 0.001, kMaxRate);
         if (!rate) return Expected("executions per second, 0.001 to 10000000");
         spec->set_rate(*rate);
         return OkStatus();
       },
       "rate"},
      {"--rate-stages", "", "rate_stages", "D:R[,D:R...]",
       "open model: ramp the arrival rate linearly to each target over each duration",
       "durations with s, m or h; rates 0..10000000", "",
       [](const std::string& text, v1::RunSpec* spec) {
         auto stages = common::ParseStages(text);
         if (!stages.ok()) {
           return Expected("stages such as 30s:100,2m:1000 (" + stages.status().message() + ")");
         }
         spec->clear_rate_stages();
         for (const auto& stage : *stages) {
           auto* out = spec->add_rate_stages();
           *out->mutable_duration() = ToDuration(stage.seconds);
           out->set_target(stage.target);
         }
         return OkStatus();
       },
       "rate_stages"},
      {"--max-users", "", "max_users", "N",
       "open model: the most users at once; an arrival finding none free is dropped", "1..10000000",
       "the peak rate x --timeout, at most 10000",
       [](const std::string& text, v1::RunSpec* spec) {
         auto n = ParseInt(text);
         if (!n || *n < 1 || *n > kMaxUsers) return Expected("1..10000000");
         spec->set_max_users(*n);
         return OkStatus();
       },
       "max_users"},
      {"--arrivals", "", "arrivals", "KIND",
       "open model: constant (evenly spaced) or poisson (exponential gaps)", "constant or poisson",
       "constant",
       [](const std::string& text, v1::RunSpec* spec) {
         if (text != "constant" && text != "poisson") return Expected("constant or poisson");
         spec->set_arrivals(text == "poisson" ? v1::ARRIVALS_POISSON : v1::ARRIVALS_CONSTANT);
         return OkStatus();
       },
       "arrivals"},
      {"--pause", "", "pause_min", "MIN[:MAX]",
       "closed model: think time between a user's executions, uniform in MIN..MAX seconds",
       "0..86400 seconds", "",
       [](const std::string& text, v1::RunSpec* spec) {
         const size_t colon = text.find(':');
         auto low = ParseSeconds(text.substr(0, colon), 0, kMaxPauseSeconds);
         auto high = colon == std::string::npos
                         ? low
                         : ParseSeconds(text.substr(colon + 1), 0, kMaxPauseSeconds);
         if (!low || !high || *high < *low) return Expected("seconds MIN or MIN:MAX, 0 to 86400");
         *spec->mutable_pause_min() = ToDuration(*low);
         *spec->mutable_pause_max() = ToDuration(*high);
         return OkStatus();
       },
       "pause"},
      {"--pacing", "", "pacing", "S",
       "closed model: each execution of a user starts S seconds after its previous one started",
       "0.001..86400 seconds", "",
       Length(0.001, kMaxPauseSeconds, "seconds, 0.001 to 86400", &v1::RunSpec::mutable_pacing),
       "pacing"},
      {"--threads", "", "threads", "N", "engine threads (of each worker, with --controller)",
       "1..1024", "local: the CPUs, at most the users; a worker: its --threads, at most its users",
       Count(kMaxThreads, &v1::RunSpec::set_threads), "threads"},
      {"--server-url", "", "server_url", "URL", "the target, as server_url() in tests",
       "an absolute http, https, ws or wss URL", "",
       [](const std::string& text, v1::RunSpec* spec) {
         if (auto url = common::ParseUrl(text); !url.ok()) {
           return Expected("an absolute URL (" + url.status().message() + ")");
         }
         spec->set_server_url(text);
         return OkStatus();
       }},
      {"--connect-timeout", "", "connect_timeout", "S",
       "connect (and TLS handshake) timeout, seconds", "0.001..3600", "10",
       Length(0.001, kMaxTimeoutSeconds, "seconds, 0.001 to 3600",
              &v1::RunSpec::mutable_connect_timeout)},
      {"--timeout", "", "timeout", "S", "read timeout of a request, seconds", "0.001..3600", "30",
       Length(0.001, kMaxTimeoutSeconds, "seconds, 0.001 to 3600", &v1::RunSpec::mutable_timeout)},
      {"--insecure", "", "insecure", "", "do not verify TLS certificates", "", "off",
       [](const std::string&, v1::RunSpec* spec) {
         spec->set_insecure(true);
         return OkStatus();
       }},
      {"--workers", "", "workers", "N", "workers to spread the users over (with --controller)",
       "1..1000", "1", Count(kMaxWorkers, &v1::RunSpec::set_workers)},
      {"--loss-policy", "", "loss_policy", "P",
       "when a worker is lost: continue (the run ends partial) or fail", "continue or fail",
       "continue",
       [](const std::string& text, v1::RunSpec* spec) {
         if (text != "continue" && text != "fail") return Expected("continue or fail");
         spec->set_loss_policy(text == "fail" ? v1::LOSS_POLICY_FAIL : v1::LOSS_POLICY_CONTINUE);
         return OkStatus();
       }},
      {"--worker-cpu", "", "worker_cpu", "Q",
       "CPU request of each worker pod a Kubernetes controller launches", "a quantity: 500m, 2",
       "the controller's",
       [](const std::string& text, v1::RunSpec* spec) {
         if (!IsResourceQuantity(text)) return Expected("a quantity such as 500m or 2");
         spec->set_worker_cpu(text);
         return OkStatus();
       }},
      {"--worker-memory", "", "worker_memory", "Q",
       "memory request of each worker pod a Kubernetes controller launches",
       "a quantity: 256Mi, 1Gi", "the controller's",
       [](const std::string& text, v1::RunSpec* spec) {
         if (!IsResourceQuantity(text)) return Expected("a quantity such as 256Mi or 1Gi");
         spec->set_worker_memory(text);
         return OkStatus();
       }},
      {"--threshold", "", "thresholds", "EXPR",
       "a verdict on the run, such as p99<250ms, errors<1%, rps>500 or 'NAME p95<1s' "
       "(repeatable; a failed one exits 10)",
       "at most 100", "",
       [](const std::string& text, v1::RunSpec* spec) {
         auto parsed = common::ParseThreshold(text);
         if (!parsed.ok()) return parsed.status();
         if (spec->thresholds_size() >= static_cast<int>(kMaxThresholds)) {
           return Expected("at most 100 thresholds");
         }
         spec->add_thresholds(parsed->text);
         return OkStatus();
       },
       "thresholds"},
      {"--notify", "", "notify", "TARGET",
       "tell the run's end: webhook:URL (POSTs the JSON report) or email:ADDRESS (a summary "
       "and the HTML report, through --smtp); repeatable",
       "at most 10", "",
       [](const std::string& text, v1::RunSpec* spec) {
         auto parsed = common::ParseNotifyTarget(text);
         if (!parsed.ok()) return parsed.status();
         if (spec->notify_size() >= static_cast<int>(kMaxNotify)) {
           return Expected("at most 10 notification targets");
         }
         spec->add_notify(text);
         return OkStatus();
       }},
      {"--project-name", "", "metadata", "NAME", "metadata kept with the run: project_name",
       "256 characters", "", Metadata("project_name")},
      {"--user-id", "", "metadata", "ID", "metadata kept with the run: user_id", "256 characters",
       "", Metadata("user_id")},
      {"--label", "", "metadata", "KEY=VALUE", "metadata kept with the run (repeatable)",
       "64 entries; keys of 1..64 letters, digits, _ . -", "",
       [](const std::string& text, v1::RunSpec* spec) {
         const size_t eq = text.find('=');
         if (eq == std::string::npos || eq == 0) return Expected("KEY=VALUE");
         (*spec->mutable_metadata())[text.substr(0, eq)] = text.substr(eq + 1);
         return OkStatus();
       }},
      {"--url", "", "url", "URL", "no test library: each execution GETs URL", "http or https", "",
       [](const std::string& text, v1::RunSpec* spec) {
         auto url = common::ParseUrl(text);
         if (!url.ok()) return Expected("an absolute URL (" + url.status().message() + ")");
         if (url->scheme != "http" && url->scheme != "https") {
           return Expected("an http:// or https:// URL");
         }
         spec->set_url(text);
         return OkStatus();
       }},
      {"--test-runner", "", "external_command", "CMD",
       "an external runner: CMD ({test} = the test argument) runs once per user and reports JSON "
       "events",
       "1..4096 characters", "",
       [](const std::string& text, v1::RunSpec* spec) {
         if (text.empty() || text.size() > kMaxCommandLength) return Expected("a command");
         spec->set_external_command(text);
         return OkStatus();
       }},
  };
  return options;
}

namespace {

// The load model's fields (docs/load-models.md): each bounded, and the models not mixed.
template <typename Name, typename Invalid>
Status ValidateLoad(const v1::RunSpec& spec, const Name& name, const Invalid& invalid) {
  const bool open = spec.rate() != 0 || !spec.rate_stages().empty();
  const bool ramped = !spec.stages().empty();
  const auto stages = [&](const auto& list, const std::string& field, double max_target) {
    if (static_cast<size_t>(list.size()) > kMaxCycles) return invalid(field, "at most 1000 stages");
    double total = 0;
    for (const auto& stage : list) {
      if (!IsLength(stage.duration()) || Seconds(stage.duration()) <= 0 ||
          !std::isfinite(stage.target()) || stage.target() < 0 || stage.target() > max_target) {
        return invalid(field, "each stage lasts more than 0 seconds and targets 0 to " +
                                  std::to_string(static_cast<int64_t>(max_target)));
      }
      total += Seconds(stage.duration());
    }
    if (total > kMaxSeconds) return invalid(field, "longer than 366 days in all");
    return OkStatus();
  };
  if (Status s = stages(spec.stages(), "stages", static_cast<double>(kMaxUsers)); !s.ok()) {
    return s;
  }
  if (Status s = stages(spec.rate_stages(), "rate_stages", kMaxRate); !s.ok()) return s;
  if (!std::isfinite(spec.rate()) || spec.rate() < 0 || spec.rate() > kMaxRate) {
    return invalid("rate", "executions per second, more than 0 and at most 10000000");
  }
  if (spec.max_users() < 0 || spec.max_users() > kMaxUsers) {
    return invalid("max_users", "must be 1..10000000 (0: the default)");
  }
  if (!v1::Arrivals_IsValid(spec.arrivals())) {
    return invalid("arrivals", "unknown kind " + std::to_string(spec.arrivals()));
  }
  const double pause_min = Seconds(spec.pause_min()), pause_max = Seconds(spec.pause_max());
  if (!IsLength(spec.pause_min()) || !IsLength(spec.pause_max()) || pause_min > kMaxPauseSeconds ||
      pause_max > kMaxPauseSeconds || (pause_max != 0 && pause_max < pause_min)) {
    return invalid("pause_min", "seconds MIN:MAX with 0 <= MIN <= MAX <= 86400");
  }
  const double pacing = Seconds(spec.pacing());
  if (!IsLength(spec.pacing()) || pacing > kMaxPauseSeconds) {
    return invalid("pacing", "seconds, more than 0 and at most 86400");
  }
  const bool paused = pause_min != 0 || pause_max != 0;
  if (paused && pacing != 0) {
    return invalid("pacing", "give pacing or a pause, not both");
  }
  if (open && ramped) {
    return invalid("stages", "ramps users (closed model): not with a rate (open model)");
  }
  if (open) {
    if (!spec.users().empty()) {
      return invalid("users", "not with a rate: the open model's users are its max_users");
    }
    if (!spec.hits().empty()) {
      return invalid("hits", "not with a rate: the rate and its duration say how many");
    }
    if (spec.rate_stages().empty() && Seconds(spec.duration()) == 0) {
      return invalid("duration", "a rate needs a duration (-d)");
    }
    if (!spec.rate_stages().empty() && Seconds(spec.duration()) != 0) {
      return invalid("duration", "not with rate stages: they set the run's length");
    }
    if (paused || pacing != 0) {
      return invalid(paused ? "pause_min" : "pacing",
                     "not with a rate: the open model's arrivals set the pace");
    }
    if (!spec.external_command().empty()) {
      return invalid("external_command", "an external runner loops by itself: no rate");
    }
  } else {
    if (spec.max_users() != 0) return invalid("max_users", "only with a rate (the open model)");
    if (spec.arrivals() == v1::ARRIVALS_POISSON) {
      return invalid("arrivals", "only with a rate (the open model)");
    }
  }
  if (ramped) {
    if (!spec.hits().empty() || Seconds(spec.duration()) != 0) {
      return invalid(spec.hits().empty() ? "duration" : "hits",
                     "not with stages: they set the users and the run's length");
    }
    if (spec.users_size() > 1) {
      return invalid("users", "with stages, at most one value: the users the ramp starts from");
    }
    if (!spec.external_command().empty()) {
      return invalid("external_command", "an external runner loops by itself: no stages");
    }
  }
  if ((paused || pacing != 0) && !spec.external_command().empty()) {
    return invalid("external_command", "an external runner loops by itself: no pause or pacing");
  }
  (void)name;
  return OkStatus();
}

}  // namespace

Status ValidateRunId(const std::string& run_id, const std::string& field) {
  if (run_id.empty() || run_id.size() > common::kMaxIdLength) {
    return InvalidArgumentError(field + ": required, at most 200 characters");
  }
  for (unsigned char c : run_id) {
    if (c <= 0x20 || c == 0x7f) {
      return InvalidArgumentError(field + ": printable characters only, no spaces");
    }
  }
  return OkStatus();
}

Status ValidateRunSpec(const v1::RunSpec& spec, Validation how) {
  // Names the field as the caller knows it.
  const auto name = [&](const std::string& field) -> std::string {
    if (how.naming == Naming::kProto) return "spec." + field;
    for (const auto& option : RunOptions()) {
      if (field == option.field) return option.flag;
    }
    return field == "test" || field == "test_library" || field == "scenario" ? "the test"
                                                                             : "--" + field;
  };
  const auto invalid = [&](const std::string& field, const std::string& what) {
    return InvalidArgumentError(name(field) + ": " + what);
  };
  const bool open = spec.rate() != 0 || !spec.rate_stages().empty();
  const bool ramped = !spec.stages().empty();
  if (Status load = ValidateLoad(spec, name, invalid); !load.ok()) return load;
  if (spec.users().empty() && !open && !ramped) {
    return invalid("users", "at least one user cycle is required");
  }
  if (static_cast<size_t>(spec.users_size()) > kMaxCycles) {
    return invalid("users", "at most 1000 cycles");
  }
  for (int64_t u : spec.users()) {
    if (u < 1 || u > kMaxUsers) return invalid("users", "each cycle must be 1..10000000");
  }
  if (static_cast<size_t>(spec.hits_size()) > kMaxCycles)
    return invalid("hits", "at most 1000 cycles");
  for (int64_t h : spec.hits()) {
    if (h < 1 || h > kMaxHits) return invalid("hits", "each cycle must be 1..1000000000000");
  }
  const double duration = Seconds(spec.duration());
  if (!IsLength(spec.duration()) ||
      (duration > 0 && (duration < 0.001 || duration > kMaxSeconds))) {
    return invalid("duration", "seconds, 0.001 to 31622400 (or 0 in hits mode)");
  }
  if (!open && !ramped && spec.hits().empty() == (duration == 0)) {
    return how.naming == Naming::kProto
               ? InvalidArgumentError("spec.hits, spec.duration: give exactly one of them")
               : InvalidArgumentError("--hits and --duration cannot be used together");
  }
  // Every planned execution must be countable.
  uint64_t users = 0, hits = 0, planned = 0;
  for (int64_t u : spec.users()) users += static_cast<uint64_t>(u);
  for (int64_t h : spec.hits()) hits += static_cast<uint64_t>(h);
  if (__builtin_mul_overflow(users, hits, &planned) || planned > (uint64_t{1} << 62)) {
    return invalid("hits", "users x hits exceeds 2^62 planned executions");
  }
  if (static_cast<size_t>(spec.thresholds_size()) > kMaxThresholds) {
    return invalid("thresholds", "at most 100");
  }
  for (const std::string& threshold : spec.thresholds()) {
    if (auto parsed = common::ParseThreshold(threshold); !parsed.ok()) {
      return invalid("thresholds", "'" + threshold + "': " + parsed.status().message());
    }
  }
  if (static_cast<size_t>(spec.notify_size()) > kMaxNotify) return invalid("notify", "at most 10");
  for (const std::string& target : spec.notify()) {
    if (auto parsed = common::ParseNotifyTarget(target); !parsed.ok()) {
      return invalid("notify", "'" + target + "': " + parsed.status().message());
    }
  }
  // One source at most (a oneof); an empty one is none.
  const int sources = !spec.url().empty() + !spec.scenario().empty() +
                      !spec.external_command().empty() + !spec.test().empty();
  if (sources != 1) {
    return how.naming == Naming::kProto
               ? InvalidArgumentError(
                     "spec.test (with spec.test_library), spec.url, spec.scenario, "
                     "spec.external_command: give exactly one of them")
               : InvalidArgumentError(
                     "give one test: MODULE.Class.method, SCENARIO.json, --url or --test-runner");
  }
  if (!spec.url().empty()) {
    auto url = common::ParseUrl(spec.url());
    if (!url.ok()) return invalid("url", url.status().message());
    if (url->scheme != "http" && url->scheme != "https") {
      return invalid("url", "expected http or https");
    }
  } else if (!spec.scenario().empty()) {
    if (spec.scenario().size() > kMaxScenarioBytes) return invalid("scenario", "larger than 1 MiB");
    if (auto parsed = common::ParseScenario(spec.scenario()); !parsed.ok()) {
      return invalid("scenario", parsed.status().message());
    }
  } else if (!spec.external_command().empty()) {
    if (spec.external_command().size() > kMaxCommandLength ||
        spec.external_command().find('\0') != std::string::npos) {
      return invalid("external_command", "a command of at most 4096 characters");
    }
  } else {
    const std::string& test = spec.test();
    const size_t first = test.find('.');
    const size_t last = test.rfind('.');
    if (first == std::string::npos || first == last || !IsIdentifier(test.substr(last + 1)) ||
        !IsIdentifier(test.substr(first + 1, last - first - 1)) || test.size() > 1000) {
      return invalid("test", "expected module.Class.method");
    }
    if (how.library_required && spec.test_library().empty()) {
      return invalid("test_library", "required with spec.test (the library's bytes)");
    }
  }
  if (!spec.test_library().empty() &&
      (spec.test().empty() || !spec.url().empty() || !spec.scenario().empty() ||
       !spec.external_command().empty())) {
    return invalid("test_library", "only with a named test");
  }
  if (spec.test_library().size() > kMaxLibraryBytes) {
    return invalid("test_library", "larger than 64 MiB, the most a worker accepts");
  }
  if (spec.workers() < 0 || spec.workers() > kMaxWorkers)
    return invalid("workers", "must be 1..1000");
  if (spec.threads() < 0 || spec.threads() > kMaxThreads)
    return invalid("threads", "must be 1..1024");
  for (const auto& [field, timeout] : {std::pair{"connect_timeout", &spec.connect_timeout()},
                                       std::pair{"timeout", &spec.timeout()}}) {
    const double seconds = Seconds(*timeout);
    if (!IsLength(*timeout) || (seconds != 0 && seconds < 0.001) || seconds > kMaxTimeoutSeconds) {
      return invalid(field, how.naming == Naming::kProto ? "0.001 s to 3600 s (unset: the default)"
                                                         : "seconds, 0.001 to 3600");
    }
  }
  if (!spec.server_url().empty() && !common::ParseUrl(spec.server_url()).ok()) {
    return invalid("server_url", "not an absolute http, https, ws or wss URL");
  }
  if (!v1::LossPolicy_IsValid(spec.loss_policy())) {
    return invalid("loss_policy", "unknown policy " + std::to_string(spec.loss_policy()));
  }
  if (!spec.worker_cpu().empty() && !IsResourceQuantity(spec.worker_cpu())) {
    return invalid("worker_cpu", "not a Kubernetes quantity (such as 500m or 2)");
  }
  if (!spec.worker_memory().empty() && !IsResourceQuantity(spec.worker_memory())) {
    return invalid("worker_memory", "not a Kubernetes quantity (such as 256Mi or 1Gi)");
  }
  if (spec.metadata_size() > static_cast<int>(kMaxMetadata)) {
    return invalid("metadata", "at most 64 entries");
  }
  for (const auto& [key, value] : spec.metadata()) {
    const bool key_ok = !key.empty() && key.size() <= 64 &&
                        key.find_first_not_of(
                            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") ==
                            std::string::npos;
    if (!key_ok) {
      return invalid("metadata", "key '" + key + "': 1 to 64 letters, digits, '_', '.' or '-'");
    }
    if (value.size() > 256 || !Printable(value)) {
      return invalid("metadata", "value of '" + key + "': at most 256 printable characters");
    }
  }
  return OkStatus();
}

Status ApplyScenarioLoad(v1::RunSpec* spec, const std::set<std::string>* given) {
  if (spec->scenario().empty()) return OkStatus();
  auto scenario = common::ParseScenario(spec->scenario());
  if (!scenario.ok()) return InvalidArgumentError("scenario: " + scenario.status().message());
  std::map<std::string, const RunOption*> by_key;
  std::string keys;
  for (const RunOption& option : RunOptions()) {
    if (*option.scenario_key == '\0') continue;
    by_key[option.scenario_key] = &option;
    keys += (keys.empty() ? "" : ", ") + std::string(option.scenario_key);
  }
  // Whether the spec (gRPC) already says something of this field.
  const auto set_in_spec = [&](const std::string& field) {
    const auto* descriptor = spec->GetDescriptor()->FindFieldByName(field);
    const auto* reflection = spec->GetReflection();
    return descriptor && (descriptor->is_repeated() ? reflection->FieldSize(*spec, descriptor) > 0
                                                    : reflection->HasField(*spec, descriptor));
  };
  // Every key parsed into `loaded` (a repeated key adds, as a repeated flag does), and the
  // fields each option set (--pause sets pause_min and pause_max).
  v1::RunSpec loaded;
  std::map<std::string, std::set<const google::protobuf::FieldDescriptor*>> fields;
  for (const auto& [key, text] : scenario->load) {
    auto option = by_key.find(key);
    if (option == by_key.end()) {
      return InvalidArgumentError("scenario: load." + key + ": not a load option (" + keys + ")");
    }
    v1::RunSpec one;
    for (v1::RunSpec* into : {&loaded, &one}) {
      if (Status parsed = option->second->parse(text, into); !parsed.ok()) {
        return InvalidArgumentError("scenario: load." + key + ": '" + text + "' (" +
                                    parsed.message() + ")");
      }
    }
    std::vector<const google::protobuf::FieldDescriptor*> set;
    one.GetReflection()->ListFields(one, &set);
    fields[option->second->field].insert(set.begin(), set.end());
  }
  for (const auto& [field, descriptors] : fields) {
    if (given ? given->count(field) > 0 : set_in_spec(field)) continue;
    v1::RunSpec only = loaded;
    std::vector<const google::protobuf::FieldDescriptor*> all;
    only.GetReflection()->ListFields(only, &all);
    for (const auto* d : all) {
      if (!descriptors.count(d)) only.GetReflection()->ClearField(&only, d);
    }
    for (const auto* d : descriptors) spec->GetReflection()->ClearField(spec, d);
    spec->MergeFrom(only);
  }
  return OkStatus();
}

void ApplyDefaults(v1::RunSpec* spec) {
  const bool open = spec->rate() != 0 || !spec->rate_stages().empty();
  const bool ramped = !spec->stages().empty();
  if (open || ramped) return;
  if (spec->users().empty()) spec->add_users(1);
  if (spec->hits().empty() && Seconds(spec->duration()) == 0) spec->add_hits(1);
}

std::vector<common::Threshold> Thresholds(const v1::RunSpec& spec) {
  std::vector<common::Threshold> parsed;
  parsed.reserve(spec.thresholds_size());
  for (const std::string& text : spec.thresholds()) {
    // Validation refused a spec with one that does not parse: nothing is lost here.
    if (auto t = common::ParseThreshold(text); t.ok()) parsed.push_back(std::move(*t));
  }
  return parsed;
}

std::string TestName(const v1::RunSpec& spec) {
  if (!spec.url().empty()) return "GET " + spec.url();
  if (!spec.external_command().empty()) return "external: " + spec.external_command();
  if (!spec.scenario().empty()) {
    const auto scenario = common::ParseScenario(spec.scenario());
    if (scenario.ok()) return common::MakeScenarioName(*scenario);
  }
  return spec.test();
}

common::Assignment ToPlan(const v1::RunSpec& spec) {
  common::Assignment plan;
  plan.test = TestName(spec);
  plan.url = spec.url();
  plan.library = spec.test_library();
  plan.scenario = spec.scenario();
  plan.external_command = spec.external_command();
  plan.users.assign(spec.users().begin(), spec.users().end());
  plan.hits.assign(spec.hits().begin(), spec.hits().end());
  if (Seconds(spec.duration()) > 0) plan.duration = Seconds(spec.duration());
  plan.threads = spec.threads();
  plan.server_url = spec.server_url();
  // The wire protocol counts timeouts in whole milliseconds (at least 1).
  const auto millis = [](const google::protobuf::Duration& d, int64_t fallback) {
    const double seconds = Seconds(d);
    return seconds > 0 ? std::max<int64_t>(1, std::llround(seconds * 1000)) : fallback;
  };
  plan.connect_timeout_ms = millis(spec.connect_timeout(), common::kDefaultConnectTimeoutMs);
  plan.timeout_ms = millis(spec.timeout(), common::kDefaultTimeoutMs);
  plan.insecure = spec.insecure();
  common::LoadModel& load = plan.load;
  for (const auto& stage : spec.stages()) {
    load.stages.push_back({Seconds(stage.duration()), stage.target()});
  }
  for (const auto& stage : spec.rate_stages()) {
    load.rate_stages.push_back({Seconds(stage.duration()), stage.target()});
  }
  if (spec.rate() != 0) load.rate = spec.rate();
  load.max_users = spec.max_users();
  load.poisson = spec.arrivals() == v1::ARRIVALS_POISSON;
  const double pause_min = Seconds(spec.pause_min()), pause_max = Seconds(spec.pause_max());
  if (pause_min != 0 || pause_max != 0) {
    load.pause_min = pause_min;
    load.pause_max = pause_max != 0 ? pause_max : pause_min;
  }
  if (Seconds(spec.pacing()) != 0) load.pacing = Seconds(spec.pacing());
  return plan;
}

google::protobuf::Duration ToDuration(double seconds) {
  google::protobuf::Duration d;
  double whole = std::floor(seconds);
  int64_t nanos = std::llround((seconds - whole) * 1e9);
  if (nanos >= 1'000'000'000) {
    whole += 1;
    nanos -= 1'000'000'000;
  }
  d.set_seconds(static_cast<int64_t>(whole));
  d.set_nanos(static_cast<int32_t>(nanos));
  return d;
}

double Seconds(const google::protobuf::Duration& d) {
  return static_cast<double>(d.seconds()) + static_cast<double>(d.nanos()) / 1e9;
}

bool IsLength(const google::protobuf::Duration& d) {
  // google/protobuf/duration.proto's range, and no negative part.
  return d.seconds() >= 0 && d.seconds() <= 315'576'000'000 && d.nanos() >= 0 &&
         d.nanos() < 1'000'000'000;
}

namespace {

// The value of a legacy fixed64 field holding a double.
double AsDouble(uint64_t bits) {
  double value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

// Moves the legacy fields of `message` that `upgrade` knows into their successors; returns the
// numbers of the unknown fields left.
template <typename Message, typename Upgrade>
std::vector<int> UpgradeUnknown(Message* message, const Upgrade& upgrade) {
  google::protobuf::UnknownFieldSet* unknown =
      message->GetReflection()->MutableUnknownFields(message);
  std::vector<int> left;
  google::protobuf::UnknownFieldSet kept;
  for (int i = 0; i < unknown->field_count(); ++i) {
    const google::protobuf::UnknownField& field = unknown->field(i);
    if (!upgrade(field)) {
      left.push_back(field.number());
      kept.AddField(field);
    }
  }
  unknown->Clear();
  unknown->MergeFrom(kept);
  return left;
}

}  // namespace

Status UpgradeLegacyFields(v1::RunSpec* spec) {
  using google::protobuf::UnknownField;
  // A legacy value never overrides its successor, should both be there.
  const auto length = [](google::protobuf::Duration* to, double seconds) {
    if (!std::isfinite(seconds) || seconds < 0 || seconds > 315'576'000'000.0) return;
    if (to->seconds() == 0 && to->nanos() == 0) *to = ToDuration(seconds);
  };
  const auto left = UpgradeUnknown(spec, [&](const UnknownField& f) {
    const bool fixed = f.type() == UnknownField::TYPE_FIXED64;
    const bool varint = f.type() == UnknownField::TYPE_VARINT;
    switch (f.number()) {
      case 6:  // double duration (seconds)
        if (fixed) length(spec->mutable_duration(), AsDouble(f.fixed64()));
        return fixed;
      case 10:  // int64 connect_timeout_ms
      case 11:  // int64 timeout_ms
        if (varint) {
          length(f.number() == 10 ? spec->mutable_connect_timeout() : spec->mutable_timeout(),
                 static_cast<double>(static_cast<int64_t>(f.varint())) / 1000);
        }
        return varint;
      case 24:  // double pause_min, pause_max, pacing (seconds)
      case 25:
      case 26:
        if (fixed) {
          length(f.number() == 24   ? spec->mutable_pause_min()
                 : f.number() == 25 ? spec->mutable_pause_max()
                                    : spec->mutable_pacing(),
                 AsDouble(f.fixed64()));
        }
        return fixed;
      default:
        return false;
    }
  });
  if (!left.empty()) {
    return InvalidArgumentError("spec: unknown field " + std::to_string(left.front()) +
                                " (a client built from another version of controller.proto?)");
  }
  for (auto* stages : {spec->mutable_stages(), spec->mutable_rate_stages()}) {
    for (v1::Stage& stage : *stages) {
      const auto stage_left = UpgradeUnknown(&stage, [&](const UnknownField& f) {
        if (f.number() != 1 || f.type() != UnknownField::TYPE_FIXED64) return false;
        length(stage.mutable_duration(), AsDouble(f.fixed64()));  // double seconds
        return true;
      });
      if (!stage_left.empty()) {
        return InvalidArgumentError("spec: unknown field " + std::to_string(stage_left.front()) +
                                    " in a stage");
      }
    }
  }
  return OkStatus();
}

v1::RunSpec FromStored(const std::string& bytes) {
  v1::RunSpec spec;
  spec.ParseFromString(bytes);
  // Only this controller's own writes are read: nothing unknown is left that matters.
  UpgradeLegacyFields(&spec).IgnoreError();
  return spec;
}

}  // namespace loads::spec
