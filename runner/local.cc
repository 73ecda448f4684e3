// The local back end: the engine in a child process of loads-runner (runner/engine_process.h),
// supervised from here so that a crash or a stuck user in test code still ends with a report.

#include <sys/resource.h>

#include <algorithm>
#include <cstdio>
#include <deque>
#include <map>
#include <optional>

#include "loads/common/run_spec.h"
#include "runner/engine_process.h"
#include "runner/run.h"

namespace loads::runner {
namespace {

using Clock = std::chrono::steady_clock;
using Event = EngineProcess::Event;

// Many virtual users need many sockets: raise the soft limit on open files to the hard one.
void RaiseFileLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

std::string Seconds(double seconds) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.1f s", seconds);
  return text;
}

// How long the plan runs when that is known in advance (duration mode, stages, rates).
std::optional<double> PlannedSeconds(const worker::EngineOptions& engine) {
  if (engine.load.open())
    return common::RateSchedule(engine.load, engine.duration.value_or(0)).EndSeconds();
  if (engine.load.ramped()) {
    return common::UserSchedule(engine.users.empty() ? 0.0 : static_cast<double>(engine.users[0]),
                                engine.load.stages)
        .EndSeconds();
  }
  if (engine.duration) return *engine.duration * static_cast<double>(engine.users.size());
  return std::nullopt;
}

// The rate of the last second, from the intervals that ended in it.
class RateWindow {
 public:
  double Add(const worker::Interval& interval) {
    window_.push_back(interval);
    while (window_.size() > 1 && interval.end - window_.front().start > std::chrono::seconds(1)) {
      window_.pop_front();
    }
    uint64_t hits = 0;
    for (const auto& entry : window_) hits += entry.hits;
    const double seconds =
        std::chrono::duration<double>(window_.back().end - window_.front().start).count();
    return seconds > 0 ? static_cast<double>(hits) / seconds : 0;
  }

 private:
  struct Entry {
    std::chrono::system_clock::time_point start;
    std::chrono::system_clock::time_point end;
    uint64_t hits;
    Entry(const worker::Interval& i) : start(i.start), end(i.end), hits(i.stats.hits) {}
  };
  std::deque<Entry> window_;
};

class LocalBackend : public RunBackend {
 public:
  LocalBackend(LocalTest test, LocalOptions options) : test_(std::move(test)), options_(options) {}

  StatusOr<RunOutcome> Run(const v1::RunSpec& spec, const std::atomic<bool>& stop,
                           const ProgressSink& sink) override {
    RaiseFileLimit();
    EngineProcess::Job job;
    job.engine = worker::EngineOptionsFor(spec::ToPlan(spec));
    job.engine.stuck_limit = options_.stuck_limit;
    job.engine.allow_targets = options_.allow_targets;
    job.load = test_.load;
    job.test = test_.name;
    job.progress_interval = sink.interval;

    RunOutcome outcome;
    common::RunInfo& info = outcome.info;
    info.test = test_.name;
    info.users = job.engine.users;
    info.hits = job.engine.duration ? std::vector<int64_t>{} : job.engine.hits;
    info.duration = job.engine.duration;
    info.threads = job.engine.threads;
    info.load = job.engine.load;
    info.started = std::chrono::system_clock::now();
    const auto start = Clock::now();
    const std::optional<double> planned = PlannedSeconds(job.engine);
    // Only read when `planned` has a value.
    const Clock::time_point planned_end = planned
                                              ? start + std::chrono::duration_cast<Clock::duration>(
                                                            std::chrono::duration<double>(*planned))
                                              : start;
    const double grace = std::chrono::duration<double>(options_.stop_timeout).count();

    EngineProcess engine;
    if (Status started = engine.Start(job); !started.ok()) return started;

    // Thresholds with `abort` are judged on the results so far at every interval.
    const std::vector<common::Threshold> thresholds = spec::Thresholds(spec);
    const bool any_abort = std::any_of(thresholds.begin(), thresholds.end(),
                                       [](const common::Threshold& t) { return t.abort; });
    std::optional<std::pair<std::string, double>> aborted;  // the threshold, seconds into the run

    common::SeriesBuilder series;
    std::optional<std::chrono::system_clock::time_point> series_start;  // the first interval's

    RateWindow rate;
    bool ended = false;  // the engine said its run is over, every interval sent
    bool stop_sent = false;
    Clock::time_point stop_deadline;
    std::string killed;   // why the runner ended the engine process
    std::string overran;  // why the runner stopped a run that went past its planned end
    std::map<int, worker::StuckUser> stuck;  // by engine thread, while stuck
    std::map<int, size_t> stuck_incident;    // where each stuck thread's incident is
    std::vector<std::string> crash_lines;
    // A stop as after Ctrl-C: users cancelled, then --stop-timeout before the process is killed.
    const auto request_stop = [&] {
      stop_sent = true;
      engine.RequestStop();
      stop_deadline = Clock::now() + options_.stop_timeout;
    };
    const auto kill = [&](const std::string& why) {
      if (!killed.empty()) return;
      killed = why;
      engine.Kill();
    };
    const auto describe_stuck = [&] {
      std::string out;
      for (const auto& [thread, user] : stuck) {
        out += out.empty() ? "" : "; ";
        out += UserName(user.user) + " held engine thread " + std::to_string(thread) +
               " without yielding";
      }
      return out;
    };

    while (!engine.Finished()) {
      for (Event& event : engine.Poll(std::chrono::milliseconds(50))) {
        switch (event.kind) {
          case Event::Kind::kProgress:
            if (sink.progress) sink.progress(event.progress);
            break;
          case Event::Kind::kInterval:
            if (sink.rate && !event.interval.final) sink.rate(rate.Add(event.interval));
            outcome.stats.Merge(event.interval.stats);
            if (!series_start) series_start = event.interval.start;
            // An interval counts in the second that holds its middle.
            series.Add(
                std::chrono::duration<double>(event.interval.start - *series_start +
                                              (event.interval.end - event.interval.start) / 2)
                    .count(),
                event.interval.stats, event.active_users);
            if (sink.results) {
              common::RunInfo so_far = info;
              so_far.duration_seconds = std::chrono::duration<double>(Clock::now() - start).count();
              sink.results(so_far, outcome.stats, series.closed(),
                           static_cast<uint64_t>(std::max<int64_t>(0, event.active_users)));
            }
            if (any_abort && !aborted && !stop_sent) {
              common::RunInfo so_far = info;
              so_far.duration_seconds = std::chrono::duration<double>(Clock::now() - start).count();
              if (const common::Threshold* failed =
                      common::FirstFailedAbort(thresholds, so_far, outcome.stats)) {
                aborted.emplace(failed->text, so_far.duration_seconds);
                request_stop();
                std::fprintf(stderr,
                             "\nloads-runner: threshold %s failed at %.1f s: stopping the run\n",
                             failed->text.c_str(), so_far.duration_seconds);
              }
            }
            break;
          case Event::Kind::kStuck:
            OnStuck(event.stuck, &stuck, &stuck_incident, &info.incidents);
            break;
          case Event::Kind::kCrash:
            crash_lines.push_back(event.text);
            break;
          case Event::Kind::kLoadFailed:
            outcome.end = RunEnd::kNotLoaded;
            outcome.load_error = event.load_error;
            outcome.error = event.text;
            break;
          case Event::Kind::kEnd:
            ended = true;
            info.started = event.end.started;
            info.duration_seconds = event.end.duration_seconds;
            info.interrupted = event.end.interrupted;
            info.threads = event.end.threads;
            info.load.max_users = event.end.max_users;
            break;
        }
      }
      if (engine.Finished()) break;
      const auto now = Clock::now();
      if (stop.load() && !stop_sent) request_stop();
      if (options_.kill_now && options_.kill_now->load()) {
        kill("a second interrupt ended the engine process at once");
      } else if (stop_sent && now >= stop_deadline) {
        kill("the engine process did not stop within " + Seconds(grace) + " of " +
             (overran.empty() ? "the interrupt" : "being stopped") +
             (stuck.empty() ? "" : " (" + describe_stuck() + ")") + ", and was killed");
      } else if (!stuck.empty() && planned && now >= planned_end + options_.stop_timeout) {
        kill("the run was still going " + Seconds(grace) + " after its planned end (" +
             describe_stuck() + "), and the engine process was killed");
      } else if (!stop_sent && planned &&
                 now >= planned_end + job.engine.timeout + options_.stop_timeout) {
        // An execution that never ends (a test that loops, catching every error) would keep the
        // run going forever: past its planned end, the request timeout and a grace, stop it.
        overran = "the run was still going " +
                  Seconds(std::chrono::duration<double>(now - planned_end).count()) +
                  " after its planned end (an execution that does not end), and its users were "
                  "cancelled";
        request_stop();
      }
    }

    if (outcome.end == RunEnd::kNotLoaded) return outcome;
    info.series = series.Finish();
    const EngineProcess::Exit& exit = engine.exit();
    // Verdicts on what the report holds, whatever ended the run.
    const auto judge = [&] {
      info.thresholds = aborted ? common::EvaluateThresholds(thresholds, info, outcome.stats,
                                                             aborted->first, aborted->second)
                                : common::EvaluateThresholds(thresholds, info, outcome.stats);
    };
    for (const auto& line : crash_lines) info.incidents.push_back(line);
    if (ended && killed.empty() && overran.empty()) {
      // A run a threshold stopped is judged by its thresholds (exit 10), not as interrupted.
      outcome.end = info.interrupted && !aborted ? RunEnd::kInterrupted : RunEnd::kDone;
      judge();
      return outcome;
    }
    outcome.end = RunEnd::kEngineFault;
    if (ended && killed.empty()) {  // stopped, every result in
      outcome.error = overran;
      info.incidents.push_back(overran);
      judge();
      return outcome;
    }
    // The engine process ended before its run did: report what it sent.
    info.interrupted = true;
    info.duration_seconds = std::chrono::duration<double>(Clock::now() - start).count();
    if (!killed.empty()) {
      if (!overran.empty()) info.incidents.push_back(overran);
      outcome.error = killed;
    } else if (exit.signaled && !crash_lines.empty()) {
      outcome.error = "the engine process crashed: " + crash_lines.back();
      info.incidents.pop_back();  // said again just below
    } else if (exit.signaled) {
      outcome.error = "the engine process died of " + DescribeSignal(exit.signal);
    } else {
      outcome.error = "the engine process exited with status " + std::to_string(exit.status) +
                      " before the run ended (does the test call exit()?)";
    }
    info.incidents.push_back(outcome.error);
    outcome.error += "; the report has the results it sent up to then (at most 250 ms are lost)";
    judge();
    return outcome;
  }

 private:
  static std::string UserName(int64_t user) {
    return user >= 0 ? "user " + std::to_string(user) : "a user";
  }

  // Says on stderr, as it happens, that a user holds its thread, and keeps one incident line per
  // episode for the report.
  void OnStuck(const worker::StuckUser& user, std::map<int, worker::StuckUser>* stuck,
               std::map<int, size_t>* where, std::vector<std::string>* incidents) const {
    const std::string who = UserName(user.user) + " of " + test_.name;
    const std::string thread = "engine thread " + std::to_string(user.thread);
    if (!user.resumed) {
      (*stuck)[user.thread] = user;
      std::fprintf(stderr,
                   "\nloads-runner: %s has held %s for %s without yielding (a busy loop, or a "
                   "blocking call such as sleep(3) or a blocking socket); the other users of that "
                   "thread wait with it\n",
                   who.c_str(), thread.c_str(), Seconds(user.seconds).c_str());
      (*where)[user.thread] = incidents->size();
      incidents->push_back(who + " held " + thread + " without yielding for more than " +
                           Seconds(user.seconds) + ", to the end");
    } else {
      stuck->erase(user.thread);
      std::fprintf(stderr, "\nloads-runner: %s yields again after %s\n", who.c_str(),
                   Seconds(user.seconds).c_str());
      if (auto it = where->find(user.thread); it != where->end()) {
        (*incidents)[it->second] =
            who + " held " + thread + " without yielding for " + Seconds(user.seconds);
        where->erase(it);
      }
    }
  }

  LocalTest test_;
  LocalOptions options_;
};

}  // namespace

std::unique_ptr<RunBackend> MakeLocalBackend(LocalTest test, LocalOptions options) {
  return std::make_unique<LocalBackend>(std::move(test), options);
}

}  // namespace loads::runner
