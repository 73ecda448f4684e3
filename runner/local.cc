// The local back end: the engine in loads-runner's own process.

#include <sys/resource.h>

#include "loads/common/run_spec.h"
#include "runner/run.h"

namespace loads::runner {
namespace {

// Many virtual users need many sockets: raise the soft limit on open files to the hard one.
void RaiseFileLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

class LocalBackend : public RunBackend {
 public:
  explicit LocalBackend(worker::TestSpec test) : test_(std::move(test)) {}

  StatusOr<RunOutcome> Run(const v1::RunSpec& spec, const std::atomic<bool>& stop,
                           const ProgressSink& sink) override {
    RaiseFileLimit();
    worker::Engine engine(worker::EngineOptionsFor(spec::ToPlan(spec)));
    // The report is the sum of one-second intervals, as a worker's is; the last interval's rate
    // is shown with the progress.
    engine.OnInterval(
        [&](const worker::Interval& i) {
          const double seconds = std::chrono::duration<double>(i.end - i.start).count();
          if (seconds > 0 && sink.rate) sink.rate(static_cast<double>(i.stats.hits) / seconds);
        },
        std::chrono::seconds(1));
    auto result = engine.Run(test_, stop, sink.progress, sink.interval);
    RunOutcome outcome;
    outcome.end = result.info.interrupted ? RunEnd::kInterrupted : RunEnd::kDone;
    outcome.info = std::move(result.info);
    outcome.stats = std::move(result.stats);
    return outcome;
  }

 private:
  worker::TestSpec test_;
};

}  // namespace

std::unique_ptr<RunBackend> MakeLocalBackend(worker::TestSpec test) {
  return std::make_unique<LocalBackend>(std::move(test));
}

}  // namespace loads::runner
