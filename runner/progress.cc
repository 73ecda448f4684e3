#include "runner/progress.h"

#include <string>

namespace loads::runner {
namespace {
constexpr int kBarWidth = 50;
}  // namespace

void ProgressDisplay::Update(const worker::Progress& p) {
  const int percent = static_cast<int>(p.fraction * 100.0 + 1e-9);
  std::string detail;
  if (p.planned_executions) {
    detail =
        std::to_string(p.executions) + "/" + std::to_string(p.planned_executions) + " executions";
  } else {
    detail = std::to_string(p.executions) + " executions";
  }
  detail += ", " + std::to_string(p.hits) + " hits";
  if (rate_ >= 0) detail += " (" + std::to_string(static_cast<uint64_t>(rate_ + 0.5)) + "/s)";
  char load[96] = "";
  if (p.target_rate > 0) {
    std::snprintf(
        load, sizeof load,
        p.target_rate >= 100 ? ", target %.0f executions/s" : ", target %.3g executions/s",
        p.target_rate);
    detail += load;
  }
  if (p.target_rate > 0 || p.ramped) detail += ", " + std::to_string(p.active_users) + " users";
  if (p.dropped) detail += ", " + std::to_string(p.dropped) + " dropped";
  if (p.cycles > 1) detail += ", cycle " + std::to_string(p.cycle) + "/" + std::to_string(p.cycles);
  char elapsed[32];
  std::snprintf(elapsed, sizeof elapsed, ", %.1fs", p.elapsed_seconds);
  detail += elapsed;
  if (terminal_) {
    const int filled = static_cast<int>(p.fraction * kBarWidth);
    std::string bar(static_cast<size_t>(filled), '=');
    bar.resize(kBarWidth, ' ');
    std::fprintf(out_, "\r[%s] %3d%%  %s\x1b[K", bar.c_str(), percent, detail.c_str());
  } else {
    std::fprintf(out_, "progress: %3d%%  %s\n", percent, detail.c_str());
  }
  std::fflush(out_);
  drawn_ = true;
}

void ProgressDisplay::Finish() {
  if (terminal_ && drawn_) std::fputc('\n', out_);
  std::fputc('\n', out_);
  std::fflush(out_);
}

}  // namespace loads::runner
