#include "loads/common/report.h"

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>
#include <numeric>
#include <sstream>

namespace loads::common {
namespace {

constexpr double kNanosPerSecond = 1e9;
constexpr size_t kMaxUrlsShown = 10;
constexpr size_t kMaxErrorsShown = 5;

struct PercentileSpec {
  const char* label;  // in the text report
  const char* key;    // in the JSON report
  double p;
};
constexpr PercentileSpec kPercentiles[] = {
    {"p50", "p50", 50}, {"p90", "p90", 90},       {"p95", "p95", 95},
    {"p99", "p99", 99}, {"p99.9", "p99_9", 99.9},
};

std::string FormatStarted(std::chrono::system_clock::time_point t, bool iso) {
  const auto micros =
      std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(micros / 1000000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char date[32];
  std::strftime(date, sizeof date, iso ? "%Y-%m-%dT%H:%M:%S" : "%Y-%m-%d %H:%M:%S", &tm);
  char out[64];
  std::snprintf(out, sizeof out, "%s.%06lld%s", date, static_cast<long long>(micros % 1000000),
                iso ? "Z" : "");
  return out;
}

std::string Millis(uint64_t nanos) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3fms", static_cast<double>(nanos) / 1e6);
  return buf;
}

std::string MillisD(double nanos) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3fms", nanos / 1e6);
  return buf;
}

double Seconds(uint64_t nanos) { return static_cast<double>(nanos) / kNanosPerSecond; }

double Rps(const RunInfo& info, const RunStats& stats) {
  return info.duration_seconds > 0 ? static_cast<double>(stats.hits) / info.duration_seconds : 0;
}

// URL names sorted slowest first (by mean latency), ties by name.
std::vector<const std::pair<const std::string, UrlStats>*> SlowestUrls(const RunStats& stats) {
  std::vector<const std::pair<const std::string, UrlStats>*> urls;
  for (const auto& entry : stats.urls) urls.push_back(&entry);
  std::stable_sort(urls.begin(), urls.end(), [](auto* a, auto* b) {
    return a->second.latency.Mean() > b->second.latency.Mean();
  });
  return urls;
}

// Error messages sorted by count, most common first, ties by message.
std::vector<std::pair<std::string, uint64_t>> CommonErrors(const RunStats& stats) {
  std::vector<std::pair<std::string, uint64_t>> errors(stats.error_messages.begin(),
                                                       stats.error_messages.end());
  std::stable_sort(errors.begin(), errors.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  return errors;
}

std::string Join(const std::vector<int64_t>& values) {
  std::string out;
  for (size_t i = 0; i < values.size(); ++i) {
    if (i) out += ':';
    out += std::to_string(values[i]);
  }
  return out;
}

// "min 0.090ms  p50 0.182ms ... max 0.865ms" of a latency histogram.
std::string PercentileLine(const Histogram& h) {
  std::string out = "min " + Millis(h.Min());
  for (const auto& spec : kPercentiles)
    out += std::string("  ") + spec.label + " " + Millis(h.Percentile(spec.p));
  return out + "  max " + Millis(h.Max());
}

nlohmann::json PercentilesJson(const Histogram& h) {
  nlohmann::json out = {
      {"count", h.Count()}, {"mean", h.Mean() / kNanosPerSecond}, {"min", Seconds(h.Min())}};
  for (const auto& spec : kPercentiles) out[spec.key] = Seconds(h.Percentile(spec.p));
  out["max"] = Seconds(h.Max());
  return out;
}

// How the run loaded its target, for the Tests line: "users 10:20, hits 5", "rate 1000/s for
// 10 seconds, at most 500 users", "users ramped 0 -> 100 -> 0 (30s:100,60s:100,30s:0)"...
std::string DescribeLoad(const RunInfo& info) {
  const LoadModel& load = info.load;
  char text[256];
  std::string out;
  if (load.open()) {
    if (load.rate_stages.empty()) {
      std::snprintf(text, sizeof text, "rate %g/s for %g seconds", load.rate.value_or(0),
                    info.duration.value_or(0));
      out = text;
    } else {
      std::snprintf(text, sizeof text, "rate ramped from %g/s", load.rate.value_or(0));
      out = std::string(text) + " along " + FormatStages(load.rate_stages);
    }
    out += load.poisson ? ", poisson arrivals" : ", constant arrivals";
    if (load.max_users > 0) out += ", at most " + std::to_string(load.max_users) + " users";
    return out;
  }
  if (load.ramped()) {
    out = "users ramped from " + std::to_string(info.users.empty() ? 0 : info.users[0]) +
          " along " + FormatStages(load.stages);
  } else {
    out = "users " + Join(info.users);
    if (info.duration) {
      std::snprintf(text, sizeof text, ", %g seconds per user cycle", *info.duration);
      out += text;
    } else {
      out += ", hits " + Join(info.hits);
    }
  }
  if (load.pacing) {
    std::snprintf(text, sizeof text, ", pacing %g s", *load.pacing);
    out += text;
  } else if (load.pause_min) {
    std::snprintf(text, sizeof text, ", pause %g..%g s", *load.pause_min,
                  load.pause_max.value_or(*load.pause_min));
    out += text;
  }
  return out;
}

std::string JoinNames(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& name : names) out += (out.empty() ? "" : ", ") + name;
  return out;
}

// The lines that say where a cluster run ran and whether its results are whole.
void FormatCluster(const ClusterRun& run, std::ostringstream& out) {
  char line[256];
  out << "\nRun " << run.run_id << " on " << run.workers.size()
      << " worker(s): " << JoinNames(run.workers) << " (" << run.state << ")\n";
  if (!run.error.empty()) out << "Failed: " << run.error << '\n';
  if (!run.lost_workers.empty()) {
    out << "Lost: " << JoinNames(run.lost_workers)
        << "; their results from their loss on are missing";
    if (run.missing_executions) {
      out << " (" << *run.missing_executions << " planned executions not reported)";
    }
    out << '\n';
  }
  if (!run.left_workers.empty()) {
    out << "Left early: " << JoinNames(run.left_workers)
        << " shut down cleanly; their users stopped early and every result they had is included\n";
  }
  if (run.controller_restarts > 0) {
    out << "Controller restarts: " << run.controller_restarts;
    if (run.unreachable_seconds > 0) {
      std::snprintf(line, sizeof line, " (unreachable for %.1f s)", run.unreachable_seconds);
      out << line;
    }
    out << "; every result it had acknowledged was kept\n";
  } else if (run.unreachable_seconds > 0) {
    std::snprintf(line, sizeof line, "Controller unreachable for %.1f s while watching\n",
                  run.unreachable_seconds);
    out << line;
  }
  if (run.late_snapshots > 0) {
    out << "Late: " << run.late_snapshots
        << " snapshot(s) arrived after the end and are not counted\n";
  }
}

}  // namespace

namespace {

std::string XmlEscape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        // XML 1.0 has no way to carry other control characters: they become spaces.
        out += static_cast<unsigned char>(c) < 0x20 && c != '\n' && c != '\t' ? ' ' : c;
    }
  }
  return out;
}

}  // namespace

std::string FormatJUnitReport(const RunInfo& info, const RunStats& stats) {
  struct Case {
    std::string classname, name;
    const char* kind = nullptr;  // "failure", "error", or none: passed
    std::string type, message, details;
  };
  std::vector<Case> cases;
  for (const auto& t : info.thresholds) {
    Case c{"loads.thresholds", t.text, nullptr, "", "", ""};
    if (!t.passed) {
      c.kind = "failure";
      c.type = "threshold";
      c.message = "observed " + t.observed_text;
      c.details = t.text + ": observed " + t.observed_text;
    }
    cases.push_back(std::move(c));
  }
  Case executions{"loads.run", "executions", nullptr, "", "", ""};
  if (stats.failures + stats.errors > 0) {
    executions.kind = "failure";
    executions.type = "executions";
    executions.message = std::to_string(stats.failures) + " failed and " +
                         std::to_string(stats.errors) + " errored of " +
                         std::to_string(stats.Executions()) + " executions";
    std::vector<std::pair<uint64_t, std::string>> messages;
    for (const auto& [message, count] : stats.error_messages) messages.emplace_back(count, message);
    std::sort(messages.rbegin(), messages.rend());
    for (size_t i = 0; i < messages.size() && i < 10; ++i) {
      executions.details += std::to_string(messages[i].first) + " x " + messages[i].second + "\n";
    }
  }
  cases.push_back(std::move(executions));
  for (const std::string& incident : info.incidents) {
    cases.push_back({"loads.run", "engine", "error", "engine", incident, incident});
  }
  if (info.cluster && (info.cluster->state == "failed" || info.cluster->state == "partial")) {
    const std::string why = info.cluster->state == "failed"
                                ? "the run failed: " + info.cluster->error
                                : "the run is partial: a worker was lost";
    cases.push_back({"loads.run", "cluster", "error", info.cluster->state, why, why});
  }

  size_t failures = 0, errors = 0;
  for (const Case& c : cases) {
    failures += c.kind && std::string_view(c.kind) == "failure";
    errors += c.kind && std::string_view(c.kind) == "error";
  }
  char time[32];
  std::snprintf(time, sizeof time, "%.3f", info.duration_seconds);
  std::ostringstream out;
  out << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  out << "<testsuites name=\"loads\" tests=\"" << cases.size() << "\" failures=\"" << failures
      << "\" errors=\"" << errors << "\" time=\"" << time << "\">\n";
  out << "  <testsuite name=\"" << XmlEscape(info.test) << "\" tests=\"" << cases.size()
      << "\" failures=\"" << failures << "\" errors=\"" << errors << "\" skipped=\"0\" time=\""
      << time << "\" timestamp=\"" << FormatStarted(info.started, true) << "\">\n";
  out << "    <properties>\n";
  const std::pair<const char*, std::string> properties[] = {
      {"hits", std::to_string(stats.hits)},
      {"executions", std::to_string(stats.Executions())},
      {"rps", std::to_string(Rps(info, stats))},
      {"load", DescribeLoad(info)},
      {"run", info.cluster ? info.cluster->run_id : "local"}};
  for (const auto& [name, value] : properties) {
    out << "      <property name=\"" << name << "\" value=\"" << XmlEscape(value) << "\"/>\n";
  }
  out << "    </properties>\n";
  for (const Case& c : cases) {
    out << "    <testcase classname=\"" << c.classname << "\" name=\"" << XmlEscape(c.name)
        << "\" time=\"" << time << "\"";
    if (!c.kind) {
      out << "/>\n";
      continue;
    }
    out << ">\n      <" << c.kind << " type=\"" << XmlEscape(c.type) << "\" message=\""
        << XmlEscape(c.message) << "\">" << XmlEscape(c.details) << "</" << c.kind << ">\n";
    out << "    </testcase>\n";
  }
  out << "  </testsuite>\n</testsuites>\n";
  return out.str();
}

std::string FormatCsvSeries(const Series& s) {
  std::ostringstream out;
  out << "second,hits,hit_errors,executions,errors,failures,active_users,p50_ms,p90_ms,p99_ms\n";
  const auto ms = [](const std::optional<double>& seconds) {
    if (!seconds) return std::string();
    char text[32];
    std::snprintf(text, sizeof text, "%.3f", *seconds * 1e3);
    return std::string(text);
  };
  for (size_t i = 0; i < s.size(); ++i) {
    char second[32];
    std::snprintf(second, sizeof second, "%g", s.seconds[i]);
    out << second << ',' << s.hits[i] << ',' << s.hit_errors[i] << ',' << s.executions[i] << ','
        << s.errors[i] << ',' << s.failures[i] << ',' << s.active_users[i] << ',' << ms(s.p50[i])
        << ',' << ms(s.p90[i]) << ',' << ms(s.p99[i]) << '\n';
  }
  return out.str();
}

uint64_t PlannedExecutions(const std::vector<int64_t>& users, const std::vector<int64_t>& hits) {
  if (hits.empty()) return 0;
  const int64_t u = std::accumulate(users.begin(), users.end(), int64_t{0});
  const int64_t h = std::accumulate(hits.begin(), hits.end(), int64_t{0});
  return static_cast<uint64_t>(u) * static_cast<uint64_t>(h);
}

std::string FormatTextReport(const RunInfo& info, const RunStats& stats) {
  std::ostringstream out;
  char line[256];
  out << "Hits: " << stats.hits << '\n';
  out << "Started: " << FormatStarted(info.started, false) << '\n';
  std::snprintf(line, sizeof line, "Duration: %.2f seconds\n", info.duration_seconds);
  out << line;
  out << "Approximate Average RPS: " << static_cast<uint64_t>(Rps(info, stats) + 0.5) << '\n';
  if (stats.latency.Count() == 0 && stats.ws_opened > 0) {
    // A WebSocket-only run has no request time: its times are the WebSocket lines below.
    out << "Average request time: n/a (no HTTP response; see the WebSocket times)\n";
  } else {
    std::snprintf(line, sizeof line, "Average request time: %.6fs\n",
                  stats.latency.Mean() / kNanosPerSecond);
    out << line;
  }
  out << "Opened web sockets: " << stats.ws_opened << '\n';
  out << "Bytes received via web sockets: " << stats.ws_bytes_received << '\n';
  out << '\n';
  out << "Success: " << stats.successes << '\n';
  out << "Errors: " << stats.errors << '\n';
  out << "Failures: " << stats.failures << '\n';
  out << '\n';
  out << "Tests: " << stats.Executions() << " executions of " << info.test << " ("
      << DescribeLoad(info) << ")\n";
  if (info.interrupted) out << "Interrupted: the run was stopped before its planned end\n";
  for (const std::string& incident : info.incidents) out << "Engine: " << incident << '\n';
  if (!info.thresholds.empty()) {
    size_t failed = 0;
    for (const auto& t : info.thresholds) failed += !t.passed;
    out << "Thresholds: " << info.thresholds.size() - failed << " passed, " << failed
        << " failed\n";
    for (const auto& t : info.thresholds) {
      out << (t.passed ? "  PASS  " : "  FAIL  ") << t.text << ": " << t.observed_text;
      if (t.aborted_at) {
        std::snprintf(line, sizeof line, " (stopped the run at %.1f s)", *t.aborted_at);
        out << line;
      }
      out << '\n';
    }
  }

  if (stats.latency.Count() > 0) out << "Request time: " << PercentileLine(stats.latency) << '\n';
  if (stats.corrected_latency.Count() > 0) {
    out << "Latency from intended start: " << PercentileLine(stats.corrected_latency) << '\n';
  } else if (stats.latency.Count() > 0 && !info.load.open()) {
    out << "Latency: uncorrected (closed model: users wait for the server, so a stall shows as "
           "fewer requests, not slower ones; --rate measures from each execution's intended "
           "start)\n";
  }
  if (stats.schedule_lag.Count() > 0) {
    out << "Schedule lag: " << PercentileLine(stats.schedule_lag) << '\n';
  }
  if (stats.ws_connect.Count() > 0) {
    out << "WebSocket connect time: " << PercentileLine(stats.ws_connect) << '\n';
  }
  if (stats.ws_round_trip.Count() > 0) {
    out << "WebSocket round trip: " << PercentileLine(stats.ws_round_trip) << " ("
        << stats.ws_round_trip.Count() << " answered sends)\n";
  }
  if (info.load.open()) {
    out << "Executions: " << stats.started << " started, " << stats.dropped
        << " dropped (no free user when due: not run)\n";
  }
  if (info.load.paced())
    out << "Missed pace: " << stats.missed_pace << " executions started late\n";

  std::string codes;
  for (size_t code = 0; code < stats.status_codes.size(); ++code) {
    if (stats.status_codes[code] == 0) continue;
    if (!codes.empty()) codes += ", ";
    codes += std::to_string(code) + ": " + std::to_string(stats.status_codes[code]);
  }
  if (!codes.empty()) out << "Status codes: " << codes << '\n';

  std::string hit_errors;
  for (int kind = 1; kind < kHitErrorCount; ++kind) {
    if (stats.hit_errors[kind] == 0) continue;
    if (!hit_errors.empty()) hit_errors += ", ";
    hit_errors += std::string(HitErrorName(static_cast<HitError>(kind))) + ": " +
                  std::to_string(stats.hit_errors[kind]);
  }
  if (!hit_errors.empty()) out << "Hit errors: " << hit_errors << '\n';

  if (!stats.urls.empty()) {
    const auto urls = SlowestUrls(stats);
    out << "\nSlowest URLs (" << std::min(urls.size(), kMaxUrlsShown) << " of " << urls.size()
        << "):\n";
    for (size_t i = 0; i < urls.size() && i < kMaxUrlsShown; ++i) {
      const auto& [name, url] = *urls[i];
      out << "  " << name << "  hits " << url.hits << "  errors " << url.errors << "  mean "
          << MillisD(url.latency.Mean()) << "  p99 " << Millis(url.latency.Percentile(99)) << '\n';
    }
  }

  if (!stats.counters.empty()) {
    out << "\nCustom metrics:\n";
    for (const auto& [name, value] : stats.counters) out << "  " << name << ": " << value << '\n';
  }

  if (!stats.error_messages.empty()) {
    const auto errors = CommonErrors(stats);
    out << "\nMost common errors (" << std::min(errors.size(), kMaxErrorsShown) << " of "
        << errors.size() << "):\n";
    for (size_t i = 0; i < errors.size() && i < kMaxErrorsShown; ++i) {
      out << "  " << errors[i].second << " x " << errors[i].first << '\n';
    }
  }
  if (info.cluster) FormatCluster(*info.cluster, out);
  return out.str();
}

std::string FormatJsonReport(const RunInfo& info, const RunStats& stats) {
  using nlohmann::json;
  json doc;
  doc["format"] = "loads.report";
  doc["version"] = kJsonReportVersion;
  doc["test"] = info.test;
  doc["started"] = FormatStarted(info.started, true);
  doc["duration_seconds"] = info.duration_seconds;
  doc["interrupted"] = info.interrupted;
  doc["incidents"] = info.incidents;
  json thresholds = json::array();
  for (const auto& t : info.thresholds) {
    thresholds.push_back(
        {{"threshold", t.text},
         {"passed", t.passed},
         {"observed", t.observed ? json(*t.observed) : json(nullptr)},
         {"observed_text", t.observed_text},
         {"aborted_at_seconds", t.aborted_at ? json(*t.aborted_at) : json(nullptr)}});
  }
  doc["thresholds"] = thresholds;
  if (info.series) {
    const Series& series = *info.series;
    const auto optional_column = [](const std::vector<std::optional<double>>& values) {
      json out = json::array();
      for (const auto& v : values) out.push_back(v ? json(*v) : json(nullptr));
      return out;
    };
    doc["series"] = {{"step_seconds", series.step_seconds},
                     {"seconds", series.seconds},
                     {"hits", series.hits},
                     {"hit_errors", series.hit_errors},
                     {"executions", series.executions},
                     {"errors", series.errors},
                     {"failures", series.failures},
                     {"active_users", series.active_users},
                     {"p50_seconds", optional_column(series.p50)},
                     {"p90_seconds", optional_column(series.p90)},
                     {"p99_seconds", optional_column(series.p99)}};
  } else {
    doc["series"] = nullptr;
  }
  const LoadModel& load = info.load;
  const auto stages = [](const std::vector<Stage>& list) {
    json out = json::array();
    for (const Stage& stage : list)
      out.push_back({{"seconds", stage.seconds}, {"target", stage.target}});
    return out;
  };
  const auto optional = [](const std::optional<double>& value) {
    return value ? json(*value) : json(nullptr);
  };
  doc["plan"] = {
      {"users", info.users},
      {"hits", info.hits},
      {"duration_seconds", info.duration ? json(*info.duration) : json(nullptr)},
      {"threads", info.threads},
      {"stages", stages(load.stages)},
      {"rate", optional(load.rate)},
      {"rate_stages", stages(load.rate_stages)},
      {"max_users", load.max_users},
      {"arrivals", load.poisson ? "poisson" : "constant"},
      {"pause_seconds",
       load.pause_min ? json::array({*load.pause_min, load.pause_max.value_or(*load.pause_min)})
                      : json(nullptr)},
      {"pacing_seconds", optional(load.pacing)}};
  doc["model"] = load.open() ? "open" : "closed";
  doc["latency_corrected"] = stats.corrected_latency.Count() > 0;
  doc["hits"] = stats.hits;
  doc["rps"] = Rps(info, stats);
  doc["latency_seconds"] = PercentilesJson(stats.latency);
  doc["corrected_latency_seconds"] =
      stats.corrected_latency.Count() ? PercentilesJson(stats.corrected_latency) : json(nullptr);
  doc["schedule_lag_seconds"] =
      stats.schedule_lag.Count() ? PercentilesJson(stats.schedule_lag) : json(nullptr);
  doc["executions"] = {
      {"started", stats.started}, {"dropped", stats.dropped}, {"missed_pace", stats.missed_pace}};
  doc["tests"] = {{"total", stats.Executions()},
                  {"success", stats.successes},
                  {"failures", stats.failures},
                  {"errors", stats.errors}};
  doc["websockets"] = {
      {"opened", stats.ws_opened},
      {"closed", stats.ws_closed},
      {"messages_received", stats.ws_messages_received},
      {"bytes_received", stats.ws_bytes_received},
      {"messages_sent", stats.ws_messages_sent},
      {"bytes_sent", stats.ws_bytes_sent},
      {"connect_seconds",
       stats.ws_connect.Count() ? PercentilesJson(stats.ws_connect) : json(nullptr)},
      {"round_trip_seconds",
       stats.ws_round_trip.Count() ? PercentilesJson(stats.ws_round_trip) : json(nullptr)}};
  json codes = json::object();
  for (size_t code = 0; code < stats.status_codes.size(); ++code) {
    if (stats.status_codes[code]) codes[std::to_string(code)] = stats.status_codes[code];
  }
  doc["status_codes"] = codes;
  json hit_errors = json::object();
  for (int kind = 1; kind < kHitErrorCount; ++kind) {
    if (stats.hit_errors[kind]) {
      hit_errors[std::string(HitErrorName(static_cast<HitError>(kind)))] = stats.hit_errors[kind];
    }
  }
  doc["hit_errors"] = hit_errors;
  json urls = json::array();
  for (const auto* entry : SlowestUrls(stats)) {
    const auto& [name, url] = *entry;
    urls.push_back({{"name", name},
                    {"hits", url.hits},
                    {"errors", url.errors},
                    {"mean_seconds", url.latency.Mean() / kNanosPerSecond},
                    {"p50_seconds", Seconds(url.latency.Percentile(50))},
                    {"p99_seconds", Seconds(url.latency.Percentile(99))},
                    {"max_seconds", Seconds(url.latency.Max())}});
  }
  doc["urls"] = urls;
  json counters = json::object();
  for (const auto& [name, value] : stats.counters) counters[name] = value;
  doc["counters"] = counters;
  json errors = json::array();
  for (const auto& [message, count] : CommonErrors(stats)) {
    errors.push_back({{"message", message}, {"count", count}});
  }
  doc["errors"] = errors;
  if (info.cluster) {
    const ClusterRun& run = *info.cluster;
    doc["run"] = {{"id", run.run_id},
                  {"state", run.state},
                  {"error", run.error},
                  {"workers", run.workers},
                  {"lost_workers", run.lost_workers},
                  {"left_workers", run.left_workers},
                  {"missing_executions",
                   run.missing_executions ? json(*run.missing_executions) : json(nullptr)},
                  {"late_snapshots", run.late_snapshots},
                  {"controller_restarts", run.controller_restarts},
                  {"unreachable_seconds", run.unreachable_seconds}};
  }
  // Replace invalid UTF-8 (e.g. bytes from a server in an error message) rather than throw.
  return doc.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

}  // namespace loads::common
