#pragma once

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>

#include "loads/common/live_page.h"
#include "loads/common/report.h"
#include "loads/common/series.h"
#include "loads/common/stats.h"

namespace loads::runner {

// The one run of loads-runner --web, as the live page shows it: "local", its results so far
// (Update, after each interval of the engine), then its final report (Finish). The page's stop
// button sets `stop`, as Ctrl-C does.
//
// Thread safety: every method may be called from any thread.
class LocalRunSource : public common::RunSource {
 public:
  static constexpr const char* kId = "local";

  explicit LocalRunSource(std::atomic<bool>* stop) : stop_(stop) {}

  void Update(const common::RunInfo& info, const common::RunStats& so_far,
              const common::Series& closed, uint64_t active_users);
  // `state`: "done", "stopped" or "failed"; `report_json`: the report as written to files.
  void Finish(const std::string& state, const std::string& report_json);

  std::vector<Entry> List() override;
  std::optional<Live> Get(const std::string& id) override;
  uint64_t WaitForChange(uint64_t seen, std::chrono::milliseconds timeout) override;
  Status Stop(const std::string& id) override;

 private:
  std::atomic<bool>* stop_;
  std::mutex mu_;
  std::condition_variable changed_;
  uint64_t generation_ = 0;  // guarded by mu_, as everything below
  bool started_ = false;
  common::RunInfo info_;
  common::RunStats stats_;
  uint64_t active_users_ = 0;
  std::string state_ = "assigning";
  std::string final_json_;
};

}  // namespace loads::runner
