#include "loads/common/load_model.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

namespace loads::common {

RateSchedule::RateSchedule(const LoadModel& model, double duration) {
  double start = 0, arrivals = 0;
  double rate = model.rate.value_or(0);
  const auto add = [&](double seconds, double from, double to) {
    segments_.push_back({start, seconds, from, to, arrivals});
    arrivals += seconds * (from + to) / 2;
    start += seconds;
    peak_ = std::max({peak_, from, to});
  };
  if (model.rate_stages.empty()) {
    add(duration, rate, rate);
  } else {
    for (const Stage& stage : model.rate_stages) {
      add(stage.seconds, rate, stage.target);
      rate = stage.target;
    }
  }
  end_ = start;
}

double RateSchedule::RateAt(double t) const {
  for (const Segment& s : segments_) {
    if (t < s.start + s.seconds) {
      const double x = std::max(0.0, t - s.start);
      return s.seconds > 0 ? s.from + (s.to - s.from) * x / s.seconds : s.to;
    }
  }
  return 0;
}

double RateSchedule::TotalArrivals() const {
  if (segments_.empty()) return 0;
  const Segment& last = segments_.back();
  return last.arrivals_before + last.seconds * (last.from + last.to) / 2;
}

double RateSchedule::ArrivalsBy(double t) const {
  for (const Segment& s : segments_) {
    if (t < s.start + s.seconds) {
      const double x = std::max(0.0, t - s.start);
      const double slope = s.seconds > 0 ? (s.to - s.from) / s.seconds : 0;
      return s.arrivals_before + s.from * x + slope * x * x / 2;
    }
  }
  return TotalArrivals();
}

std::optional<double> RateSchedule::TimeOf(double count) const {
  for (const Segment& s : segments_) {
    const double in_segment = s.seconds * (s.from + s.to) / 2;
    if (count >= s.arrivals_before + in_segment) continue;
    // Solve from*x + slope*x^2/2 = count - arrivals_before for x in [0, seconds].
    const double need = std::max(0.0, count - s.arrivals_before);
    if (need == 0) return s.start;
    const double a = s.seconds > 0 ? (s.to - s.from) / s.seconds / 2 : 0;
    const double b = s.from;
    double x;
    if (std::abs(a) < 1e-12) {
      x = b > 0 ? need / b : 0;
    } else {
      // The root of a*x^2 + b*x - need = 0 where the rate is positive; written to avoid
      // cancelling when b is large.
      const double disc = std::max(0.0, b * b + 4 * a * need);
      x = 2 * need / (b + std::sqrt(disc));
    }
    return s.start + std::clamp(x, 0.0, s.seconds);
  }
  return std::nullopt;
}

UserSchedule::UserSchedule(double start, const std::vector<Stage>& stages)
    : start_(start), stages_(stages) {
  double previous = start;
  peak_ = static_cast<int64_t>(std::llround(start));
  for (const Stage& stage : stages_) {
    end_ += stage.seconds;
    peak_ = std::max<int64_t>(peak_, std::llround(stage.target));
    previous = stage.target;
  }
  (void)previous;
}

int64_t UserSchedule::UsersAt(double t) const {
  double from = start_, begin = 0;
  for (const Stage& stage : stages_) {
    if (t < begin + stage.seconds) {
      const double x = std::max(0.0, t - begin);
      const double users =
          stage.seconds > 0 ? from + (stage.target - from) * x / stage.seconds : stage.target;
      return static_cast<int64_t>(std::floor(users + 0.5));
    }
    from = stage.target;
    begin += stage.seconds;
  }
  return stages_.empty() ? static_cast<int64_t>(std::llround(start_))
                         : static_cast<int64_t>(std::llround(stages_.back().target));
}

StatusOr<std::vector<Stage>> ParseStages(const std::string& text) {
  std::vector<Stage> stages;
  size_t start = 0;
  while (true) {
    const size_t comma = text.find(',', start);
    const std::string item = text.substr(start, comma - start);
    const size_t colon = item.find(':');
    if (colon == std::string::npos) {
      return InvalidArgumentError("'" + item + "' is not DURATION:TARGET");
    }
    std::string duration = item.substr(0, colon);
    const std::string target = item.substr(colon + 1);
    double unit = 1;
    if (!duration.empty() &&
        (duration.back() == 's' || duration.back() == 'm' || duration.back() == 'h')) {
      unit = duration.back() == 'm' ? 60 : duration.back() == 'h' ? 3600 : 1;
      duration.pop_back();
    }
    Stage stage;
    auto [end, ec] =
        std::from_chars(duration.data(), duration.data() + duration.size(), stage.seconds);
    if (ec != std::errc() || end != duration.data() + duration.size() ||
        !std::isfinite(stage.seconds) || stage.seconds <= 0) {
      return InvalidArgumentError(
          "'" + item + "': the duration must be a positive number of seconds (s, m or h)");
    }
    stage.seconds *= unit;
    auto [tend, tec] = std::from_chars(target.data(), target.data() + target.size(), stage.target);
    if (tec != std::errc() || tend != target.data() + target.size() ||
        !std::isfinite(stage.target) || stage.target < 0) {
      return InvalidArgumentError("'" + item + "': the target must be a number >= 0");
    }
    stages.push_back(stage);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return stages;
}

std::string FormatStages(const std::vector<Stage>& stages) {
  std::string out;
  char item[64];
  for (const Stage& s : stages) {
    std::snprintf(item, sizeof item, "%s%gs:%g", out.empty() ? "" : ",", s.seconds, s.target);
    out += item;
  }
  return out;
}

}  // namespace loads::common
