#include "loads/controller/live_runs.h"

#include "loads/controller/service.h"

namespace loads::controller {

std::vector<common::RunSource::Entry> BrokerRunSource::List() {
  std::vector<Entry> out;
  auto page = broker_->ListRuns(std::nullopt, "", 100);
  if (!page.ok()) return out;
  for (const RunView& view : page->runs) {
    out.push_back(Entry{view.run_id, std::string(RunStateName(view.state)), view.test, view.started,
                        view.stats.hits, view.stats.Executions(), view.active_users});
  }
  return out;
}

std::optional<common::RunSource::Live> BrokerRunSource::Get(const std::string& id) {
  auto view = broker_->GetRun(id);
  if (!view) return std::nullopt;
  return Live{std::string(RunStateName(view->state)), IsOver(view->state),
              ControllerService::LiveReport(*view)};
}

uint64_t BrokerRunSource::WaitForChange(uint64_t seen, std::chrono::milliseconds timeout) {
  return broker_->WaitForChange(seen, timeout);
}

Status BrokerRunSource::Stop(const std::string& id) { return broker_->StopRun(id); }

}  // namespace loads::controller
