#include "loads/controller/metrics.h"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <algorithm>
#include <functional>
#include <optional>
#include <set>

#include "loads/common/metrics_endpoint.h"
#include "loads/common/thread_annotations.h"

namespace loads::controller {
namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;
using prometheus::Counter;
using prometheus::Family;
using prometheus::Gauge;
using prometheus::Histogram;

// Seconds; from loopback to slow services.
const std::vector<double> kBuckets = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                      0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                      1,      2.5,     5,      10,    30};
// "quantile" is reserved for summaries; these are gauges with a "percentile" label.
constexpr std::pair<const char*, double> kPercentiles[] = {
    {"50", 50}, {"90", 90}, {"99", 99}, {"99.9", 99.9}};

// Label values of RunStats::StatusClasses, by index.
constexpr const char* kStatusClasses[] = {"error", "1xx", "2xx", "3xx", "4xx", "5xx"};

// A test label short enough to read on a dashboard (external commands can be long), cut on a
// UTF-8 character boundary.
std::string TestLabel(const std::string& test) {
  constexpr size_t kMax = 120;
  if (test.size() <= kMax) return test;
  size_t end = kMax;
  while (end > 0 && (static_cast<unsigned char>(test[end]) & 0xC0) == 0x80) --end;
  return test.substr(0, end) + "...";
}

}  // namespace

struct Metrics::Impl {
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
  std::unique_ptr<common::MetricsEndpoint> endpoint;  // stopped first (~Metrics)
  std::chrono::seconds retention;

  Family<Counter>& hits =
      BuildCounter()
          .Name("loads_hits_total")
          .Help(
              "HTTP requests sent (each redirect hop is one), by run, test, method and status "
              "class (1xx-5xx, or error when no response came)")
          .Register(*registry);
  Family<Counter>& hit_errors = BuildCounter()
                                    .Name("loads_hit_errors_total")
                                    .Help("Requests without a response, by run and kind")
                                    .Register(*registry);
  Family<Counter>& executions =
      BuildCounter()
          .Name("loads_executions_total")
          .Help("Test executions by run and outcome (success, failure, error)")
          .Register(*registry);
  Family<Histogram>& duration = BuildHistogram()
                                    .Name("loads_request_duration_seconds")
                                    .Help("Request latency (requests that got a response), by run")
                                    .Register(*registry);
  Family<Gauge>& quantiles = BuildGauge()
                                 .Name("loads_request_duration_percentile_seconds")
                                 .Help("Exact merged latency percentiles of the run so far")
                                 .Register(*registry);
  Family<Counter>& url_hits =
      BuildCounter()
          .Name("loads_url_hits_total")
          .Help("Requests by run and request name (at most 100 names per run, then (other))")
          .Register(*registry);
  Family<Counter>& ws =
      BuildCounter()
          .Name("loads_websocket_events_total")
          .Help(
              "WebSocket activity by run and event (opened, closed, messages_received, "
              "messages_sent)")
          .Register(*registry);
  Family<Counter>& ws_bytes =
      BuildCounter()
          .Name("loads_websocket_bytes_total")
          .Help("WebSocket payload bytes by run and direction (received, sent)")
          .Register(*registry);
  Family<Histogram>& ws_connect =
      BuildHistogram()
          .Name("loads_websocket_connect_duration_seconds")
          .Help("Time from create_ws() to the end of the WebSocket handshake, by run")
          .Register(*registry);
  Family<Histogram>& ws_round_trip =
      BuildHistogram()
          .Name("loads_websocket_round_trip_seconds")
          .Help("Time from a WebSocket send() to the message that answers it, by run")
          .Register(*registry);
  Family<Counter>& custom =
      BuildCounter()
          // Not "..._counter_total": promtool's lint refuses a type in a metric's name.
          .Name("loads_custom_total")
          .Help("Custom counters (incr_counter) by run and name (at most 100 names per run)")
          .Register(*registry);
  Family<Gauge>& active_users =
      BuildGauge()
          .Name("loads_active_users")
          .Help("Virtual users running now, summed over the run's workers")
          .Register(*registry);
  Family<Counter>& started = BuildCounter()
                                 .Name("loads_executions_started_total")
                                 .Help("Executions started (the achieved rate)")
                                 .Register(*registry);
  Family<Counter>& dropped_executions =
      BuildCounter()
          .Name("loads_dropped_executions_total")
          .Help("Arrivals of the open model that found no free user: not run")
          .Register(*registry);
  Family<Counter>& missed_pace = BuildCounter()
                                     .Name("loads_missed_pace_total")
                                     .Help("Paced executions that started late")
                                     .Register(*registry);
  Family<Gauge>& target_rate = BuildGauge()
                                   .Name("loads_target_rate")
                                   .Help("Executions per second the open model asks for now")
                                   .Register(*registry);
  Family<Histogram>& corrected = BuildHistogram()
                                     .Name("loads_corrected_request_duration_seconds")
                                     .Help(
                                         "Latency of requests from their execution's intended "
                                         "start (open model, pacing)")
                                     .Register(*registry);
  Family<Gauge>& corrected_quantiles =
      BuildGauge()
          .Name("loads_corrected_request_duration_percentile_seconds")
          .Help("Exact merged percentiles of the latency from the intended start")
          .Register(*registry);
  Family<Gauge>& planned_users = BuildGauge()
                                     .Name("loads_planned_users")
                                     .Help("Virtual users of the run's largest user cycle")
                                     .Register(*registry);
  Family<Gauge>& workers = BuildGauge()
                               .Name("loads_workers")
                               .Help("Connected workers by state (idle, busy)")
                               .Register(*registry);
  Family<Gauge>& runs = BuildGauge()
                            .Name("loads_runs")
                            .Help("Runs known to the controller by state")
                            .Register(*registry);
  Family<Counter>& snapshots = BuildCounter()
                                   .Name("loads_snapshots_received_total")
                                   .Help("Result snapshots merged")
                                   .Register(*registry);
  Family<Counter>& dropped = BuildCounter()
                                 .Name("loads_messages_dropped_total")
                                 .Help("Worker messages dropped, by reason")
                                 .Register(*registry);
  Family<Histogram>& merge_delay = BuildHistogram()
                                       .Name("loads_merge_delay_seconds")
                                       .Help("From the end of a snapshot's interval to its merge")
                                       .Register(*registry);
  Histogram* merge_delay_all = nullptr;

  // Guards the per-run bookkeeping below (the prometheus-cpp families are thread-safe).
  Mutex mu;
  struct RunSeries {
    std::map<const void*, std::function<void()>> removers;  // one per series
    // Per kind (url, counter, method): the names given a series of their own.
    std::map<std::string, std::set<std::string>> names;
    std::string test;  // the `test` label of its hits
    std::optional<std::chrono::steady_clock::time_point> expires;
  };
  std::map<std::string, RunSeries> runs_series LOADS_GUARDED_BY(mu);

  // Remembers a run's series so that it can be removed when the run expires.
  template <typename T>
  T& Track(Family<T>& family, const std::string& run, T& metric) LOADS_REQUIRES(mu) {
    runs_series[run].removers.try_emplace(&metric, [&family, m = &metric] { family.Remove(m); });
    return metric;
  }
  template <typename T>
  T& Get(Family<T>& family, const std::string& run, prometheus::Labels labels) LOADS_REQUIRES(mu) {
    labels["run"] = run;
    return Track(family, run, family.Add(labels));
  }
  // The label value for name: itself among the first `cap` names of its kind in the run, then
  // "(other)". Adding the same labels twice returns the same metric, whose remover is kept once.
  std::string Capped(const std::string& run, const std::string& kind, const std::string& name,
                     size_t cap = kMaxNamesPerRun) LOADS_REQUIRES(mu) {
    auto& names = runs_series[run].names[kind];
    if (names.count(name) || names.size() < cap) {
      names.insert(name);
      return name;
    }
    return "(other)";
  }
};

Metrics::Metrics(const std::string& address, std::chrono::seconds retention,
                 const std::string& token)
    : impl_(std::make_unique<Impl>()) {
  impl_->retention = retention;
  impl_->endpoint = std::make_unique<common::MetricsEndpoint>(address, impl_->registry, token);
  // Every reason from the start, at 0: a rate() over a series that appears only with the first
  // drop is empty ("No data") on a clean cluster, and increase() misses that first drop.
  for (const char* reason : kDropReasons) impl_->dropped.Add({{"reason", reason}});
  impl_->merge_delay_all = &impl_->merge_delay.Add(
      {}, Histogram::BucketBoundaries{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5});
}

Metrics::~Metrics() {
  // Its threads read the registry: stopped before the families go.
  impl_->endpoint.reset();
}

int Metrics::port() const { return impl_->endpoint->port(); }

void Metrics::OnSnapshot(const std::string& run, const common::RunStats& d, double merge_delay) {
  Impl& m = *impl_;
  MutexLock lock(m.mu);
  m.snapshots.Add({}).Increment();
  m.merge_delay_all->Observe(std::max(0.0, merge_delay));
  for (int kind = 1; kind < common::kHitErrorCount; ++kind) {
    const uint64_t n = d.hit_errors[kind];
    if (!n) continue;
    m.Get(m.hit_errors, run,
          {{"kind", std::string(common::HitErrorName(static_cast<common::HitError>(kind)))}})
        .Increment(static_cast<double>(n));
  }
  for (const auto& [method, by] : d.methods) {
    for (size_t i = 0; i < by.size(); ++i) {
      if (!by[i]) continue;
      m.Get(m.hits, run,
            {{"test", m.runs_series[run].test},
             {"method", m.Capped(run, "method", method, common::RunStats::kMaxMethods)},
             {"status_class", kStatusClasses[i]}})
          .Increment(static_cast<double>(by[i]));
    }
  }
  const std::pair<const char*, uint64_t> outcomes[] = {
      {"success", d.successes}, {"failure", d.failures}, {"error", d.errors}};
  for (const auto& [outcome, n] : outcomes) {
    auto& counter = m.Get(m.executions, run, {{"outcome", outcome}});
    if (n) counter.Increment(static_cast<double>(n));
  }
  // The HDR buckets are folded into the classic ones by each bucket's highest value, so counts
  // are exact and each value lands in the bucket of its (rounded-up) latency.
  const auto observe = [&](Family<Histogram>& family, const common::Histogram& h,
                           bool always) LOADS_REQUIRES(m.mu) {
    if (!always && h.Count() == 0) return;
    std::vector<double> increments(kBuckets.size() + 1, 0);
    h.ForEachBucket([&](uint64_t, uint64_t high, uint64_t count) {
      const double seconds = static_cast<double>(high) / 1e9;
      increments[std::lower_bound(kBuckets.begin(), kBuckets.end(), seconds) - kBuckets.begin()] +=
          static_cast<double>(count);
    });
    auto& histogram = m.Track(family, run, family.Add({{"run", run}}, kBuckets));
    if (h.Count()) histogram.ObserveMultiple(increments, static_cast<double>(h.Sum()) / 1e9);
  };
  observe(m.duration, d.latency, true);
  observe(m.corrected, d.corrected_latency, false);
  observe(m.ws_connect, d.ws_connect, false);
  observe(m.ws_round_trip, d.ws_round_trip, false);
  // Every run has these series, at 0 when its model does not drop or pace: a dashboard shows 0,
  // not "no data".
  m.Get(m.started, run, {}).Increment(static_cast<double>(d.started));
  m.Get(m.dropped_executions, run, {}).Increment(static_cast<double>(d.dropped));
  m.Get(m.missed_pace, run, {}).Increment(static_cast<double>(d.missed_pace));
  for (const auto& [name, url] : d.urls) {
    m.Get(m.url_hits, run, {{"name", m.Capped(run, "url", name)}})
        .Increment(static_cast<double>(url.hits));
  }
  for (const auto& [name, value] : d.counters) {
    if (value > 0) {
      m.Get(m.custom, run, {{"name", m.Capped(run, "counter", name)}})
          .Increment(static_cast<double>(value));
    }
  }
  const std::pair<const char*, uint64_t> ws_events[] = {
      {"opened", d.ws_opened},
      {"closed", d.ws_closed},
      {"messages_received", d.ws_messages_received},
      {"messages_sent", d.ws_messages_sent}};
  for (const auto& [event, n] : ws_events) {
    if (n) m.Get(m.ws, run, {{"event", event}}).Increment(static_cast<double>(n));
  }
  if (d.ws_bytes_received) {
    m.Get(m.ws_bytes, run, {{"direction", "received"}})
        .Increment(static_cast<double>(d.ws_bytes_received));
  }
  if (d.ws_bytes_sent) {
    m.Get(m.ws_bytes, run, {{"direction", "sent"}}).Increment(static_cast<double>(d.ws_bytes_sent));
  }
}

void Metrics::SetQuantiles(const std::string& run, const common::RunStats& stats) {
  Impl& m = *impl_;
  MutexLock lock(m.mu);
  for (const auto& [label, p] : kPercentiles) {
    if (stats.latency.Count()) {
      m.Get(m.quantiles, run, {{"percentile", label}})
          .Set(static_cast<double>(stats.latency.Percentile(p)) / 1e9);
    }
    if (stats.corrected_latency.Count()) {
      m.Get(m.corrected_quantiles, run, {{"percentile", label}})
          .Set(static_cast<double>(stats.corrected_latency.Percentile(p)) / 1e9);
    }
  }
}

void Metrics::SetTargetRate(const std::string& run, double rate) {
  Impl& m = *impl_;
  MutexLock lock(m.mu);
  m.Get(m.target_rate, run, {}).Set(rate);
}

void Metrics::RunStarted(const std::string& run, const std::string& test, int64_t planned_users) {
  Impl& m = *impl_;
  MutexLock lock(m.mu);
  m.runs_series[run].test = TestLabel(test);
  m.Get(m.planned_users, run, {}).Set(static_cast<double>(planned_users));
  m.Get(m.active_users, run, {}).Set(0);
}

void Metrics::SetActiveUsers(const std::string& run, int64_t users) {
  Impl& m = *impl_;
  MutexLock lock(m.mu);
  m.Get(m.active_users, run, {}).Set(static_cast<double>(users));
}

void Metrics::RunEnded(const std::string& run) {
  Impl& m = *impl_;
  MutexLock lock(m.mu);
  auto it = m.runs_series.find(run);
  if (it != m.runs_series.end() && !it->second.expires) {
    it->second.expires = std::chrono::steady_clock::now() + m.retention;
  }
}

void Metrics::Expire() {
  Impl& m = *impl_;
  MutexLock lock(m.mu);
  const auto now = std::chrono::steady_clock::now();
  for (auto it = m.runs_series.begin(); it != m.runs_series.end();) {
    if (it->second.expires && *it->second.expires <= now) {
      for (auto& [metric, remove] : it->second.removers) remove();
      it = m.runs_series.erase(it);
    } else {
      ++it;
    }
  }
}

void Metrics::SetWorkers(int64_t idle, int64_t busy) {
  impl_->workers.Add({{"state", "idle"}}).Set(static_cast<double>(idle));
  impl_->workers.Add({{"state", "busy"}}).Set(static_cast<double>(busy));
}

void Metrics::SetRuns(const std::map<std::string, int64_t>& by_state) {
  for (const char* state : {"assigning", "running", "done", "failed", "stopped", "partial"}) {
    auto it = by_state.find(state);
    impl_->runs.Add({{"state", state}})
        .Set(it == by_state.end() ? 0 : static_cast<double>(it->second));
  }
}

void Metrics::Dropped(const std::string& reason) {
  impl_->dropped.Add({{"reason", reason}}).Increment();
}

}  // namespace loads::controller
