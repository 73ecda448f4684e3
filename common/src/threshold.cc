#include "loads/common/threshold.h"

#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "loads/common/report.h"

namespace loads::common {
namespace {

using Measure = Threshold::Measure;

bool IsLatency(Measure m) {
  return m == Measure::kPercentile || m == Measure::kMean || m == Measure::kMax;
}

bool IsShare(Measure m) {
  return m == Measure::kErrors || m == Measure::kFailures || m == Measure::kHitErrors ||
         m == Measure::kDropped;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

std::optional<double> Number(std::string_view text) {
  if (text.empty() || !(std::isdigit(static_cast<unsigned char>(text[0])) || text[0] == '.')) {
    return std::nullopt;
  }
  const std::string copy(text);
  char* end = nullptr;
  const double value = std::strtod(copy.c_str(), &end);
  if (end != copy.c_str() + copy.size() || !std::isfinite(value)) return std::nullopt;
  return value;
}

std::string Format(const char* format, double value) {
  char text[64];
  std::snprintf(text, sizeof(text), format, value);
  return text;
}

bool Compare(double observed, Threshold::Op op, double value) {
  switch (op) {
    case Threshold::Op::kLess:
      return observed < value;
    case Threshold::Op::kLessOrEqual:
      return observed <= value;
    case Threshold::Op::kGreater:
      return observed > value;
    case Threshold::Op::kGreaterOrEqual:
      return observed >= value;
    case Threshold::Op::kEqual:
      return observed == value;
  }
  return false;
}

}  // namespace

StatusOr<Threshold> ParseThreshold(std::string_view text) {
  const auto invalid = [](const std::string& why) { return InvalidArgumentError(why); };
  Threshold t;
  t.text = std::string(Trim(text));
  std::string_view rest = t.text;
  if (rest.empty()) return invalid("empty; expected such as p99<250ms or errors<1%");
  if (rest.size() > 1000) return invalid("longer than 1000 characters");
  // `abort` or `abort:DELAY` ends the text.
  if (const size_t space = rest.find_last_of(" \t");
      space != std::string_view::npos && rest.substr(space + 1).starts_with("abort")) {
    const std::string_view abort = rest.substr(space + 1);
    t.abort = true;
    if (abort != "abort") {
      std::string_view delay = abort.substr(5);
      if (!delay.starts_with(":"))
        return invalid("expected abort or abort:DELAY, such as abort:10s");
      delay.remove_prefix(1);
      double scale = 1;
      if (delay.ends_with("ms")) {
        scale = 1e-3;
        delay.remove_suffix(2);
      } else if (delay.ends_with("s")) {
        delay.remove_suffix(1);
      } else if (delay.ends_with("m")) {
        scale = 60;
        delay.remove_suffix(1);
      }
      const auto seconds = Number(delay);
      if (!seconds || *seconds * scale > 86400) {
        return invalid("an abort delay is 0 to 86400 seconds, such as abort:10s");
      }
      t.abort_after = *seconds * scale;
    }
    rest = Trim(rest.substr(0, space));
  }
  // A hit name, if any, is everything before the last space.
  if (const size_t space = rest.find_last_of(" \t"); space != std::string_view::npos) {
    t.name = std::string(Trim(rest.substr(0, space)));
    rest = rest.substr(space + 1);
  }
  const size_t op_at = rest.find_first_of("<>=");
  if (op_at == std::string_view::npos || op_at == 0) {
    return invalid("expected MEASURE OP VALUE, such as p99<250ms or errors<1%");
  }
  const std::string_view measure = rest.substr(0, op_at);
  rest = rest.substr(op_at);
  if (rest.starts_with("<=")) {
    t.op = Threshold::Op::kLessOrEqual;
  } else if (rest.starts_with(">=")) {
    t.op = Threshold::Op::kGreaterOrEqual;
  } else if (rest.starts_with("==")) {
    t.op = Threshold::Op::kEqual;
  } else if (rest.starts_with("<")) {
    t.op = Threshold::Op::kLess;
  } else if (rest.starts_with(">")) {
    t.op = Threshold::Op::kGreater;
  } else {
    return invalid("expected one of the operators <, <=, >, >=, ==");
  }
  rest.remove_prefix(t.op == Threshold::Op::kLess || t.op == Threshold::Op::kGreater ? 1 : 2);

  if (measure.size() > 1 && measure[0] == 'p') {
    const auto p = Number(measure.substr(1));
    if (!p || *p <= 0 || *p > 100) return invalid("a percentile is p1 to p100, such as p99.9");
    t.measure = Measure::kPercentile;
    t.percentile = *p;
  } else if (measure == "mean") {
    t.measure = Measure::kMean;
  } else if (measure == "max") {
    t.measure = Measure::kMax;
  } else if (measure == "errors") {
    t.measure = Measure::kErrors;
  } else if (measure == "failures") {
    t.measure = Measure::kFailures;
  } else if (measure == "hit_errors") {
    t.measure = Measure::kHitErrors;
  } else if (measure == "dropped") {
    t.measure = Measure::kDropped;
  } else if (measure == "rps") {
    t.measure = Measure::kRps;
  } else {
    return invalid("unknown measure '" + std::string(measure) +
                   "' (expected pNN, mean, max, errors, failures, hit_errors, dropped or rps)");
  }
  if (!t.name.empty() && !IsLatency(t.measure) && t.measure != Measure::kErrors) {
    return invalid("only latencies and errors are measured per hit name");
  }

  // The value and its unit.
  size_t unit_at = 0;
  while (unit_at < rest.size() &&
         (std::isdigit(static_cast<unsigned char>(rest[unit_at])) || rest[unit_at] == '.')) {
    ++unit_at;
  }
  const auto value = Number(rest.substr(0, unit_at));
  const std::string_view unit = rest.substr(unit_at);
  if (!value) return invalid("expected a non-negative number after the operator");
  t.value = *value;
  if (IsLatency(t.measure)) {
    if (unit == "ms") {
      t.value /= 1e3;
    } else if (unit == "us") {
      t.value /= 1e6;
    } else if (unit != "s") {
      return invalid("a latency needs its unit: us, ms or s (such as 250ms)");
    }
  } else if (IsShare(t.measure)) {
    if (unit == "%") {
      if (t.value > 100) return invalid("a share is 0% to 100%");
      t.percent = true;
      t.value /= 100;
    } else if (!unit.empty()) {
      return invalid("expected a count, or a share such as 1%");
    }
  } else if (!unit.empty() && unit != "/s") {
    return invalid("rps is requests per second, such as rps>500");
  }
  return t;
}

ThresholdResult EvaluateThreshold(const Threshold& t, const RunInfo& info, const RunStats& stats) {
  ThresholdResult result;
  result.text = t.text;
  const UrlStats* url = nullptr;
  if (!t.name.empty()) {
    const auto it = stats.urls.find(t.name);
    if (it == stats.urls.end()) {
      result.observed_text = "no hit named '" + t.name + "'";
      return result;
    }
    url = &it->second;
  }
  if (IsLatency(t.measure)) {
    const Histogram& h = url ? url->latency : stats.latency;
    if (h.Count() == 0) {
      result.observed_text = "no response";
      return result;
    }
    // As the report computes them, so that the observed value is the report's number.
    result.observed = t.measure == Measure::kPercentile
                          ? static_cast<double>(h.Percentile(t.percentile)) / 1e9
                      : t.measure == Measure::kMax ? static_cast<double>(h.Max()) / 1e9
                                                   : h.Mean() / 1e9;
    result.observed_text = Format("%.3fms", *result.observed * 1e3);
  } else if (t.measure == Measure::kRps) {
    result.observed =
        info.duration_seconds > 0 ? static_cast<double>(stats.hits) / info.duration_seconds : 0;
    result.observed_text = Format("%.1f/s", *result.observed);
  } else {
    uint64_t count = 0, of = 0;
    switch (t.measure) {
      case Measure::kErrors:
        count = url ? url->errors : stats.errors;
        of = url ? url->hits : stats.Executions();
        break;
      case Measure::kFailures:
        count = stats.failures;
        of = stats.Executions();
        break;
      case Measure::kHitErrors:
        for (uint64_t n : stats.hit_errors) count += n;
        of = stats.hits;
        break;
      default:  // kDropped
        count = stats.dropped;
        of = stats.started + stats.dropped;
        break;
    }
    if (t.percent) {
      result.observed = of ? static_cast<double>(count) / static_cast<double>(of) : 0;
      result.observed_text = Format("%.2f%%", *result.observed * 100) + " (" +
                             std::to_string(count) + " of " + std::to_string(of) + ")";
    } else {
      result.observed = static_cast<double>(count);
      result.observed_text = std::to_string(count);
    }
  }
  result.passed = Compare(*result.observed, t.op, t.value);
  return result;
}

std::vector<ThresholdResult> EvaluateThresholds(const std::vector<Threshold>& thresholds,
                                                const RunInfo& info, const RunStats& stats,
                                                const std::string& aborted_by, double aborted_at) {
  std::vector<ThresholdResult> results;
  results.reserve(thresholds.size());
  bool marked = false;
  for (const Threshold& t : thresholds) {
    results.push_back(EvaluateThreshold(t, info, stats));
    if (!marked && !aborted_by.empty() && t.text == aborted_by) {
      results.back().passed = false;
      results.back().aborted_at = aborted_at;
      marked = true;
    }
  }
  return results;
}

const Threshold* FirstFailedAbort(const std::vector<Threshold>& thresholds, const RunInfo& so_far,
                                  const RunStats& stats) {
  for (const Threshold& t : thresholds) {
    if (!t.abort || so_far.duration_seconds < t.abort_after) continue;
    if (!EvaluateThreshold(t, so_far, stats).passed) return &t;
  }
  return nullptr;
}

}  // namespace loads::common
