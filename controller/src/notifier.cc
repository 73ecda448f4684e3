#include "loads/controller/notifier.h"

#include <cstdio>

#include "loads/common/html_report.h"
#include "loads/common/run_spec.h"
#include "loads/controller/service.h"

namespace loads::controller {

RunNotifier::RunNotifier(Broker* broker, std::vector<common::NotifyTarget> defaults,
                         common::NotifySettings settings)
    : broker_(broker), defaults_(std::move(defaults)), settings_(std::move(settings)) {}

void RunNotifier::Start() {
  for (const RunSummary& run : broker_->ListRunSummaries()) {
    if (IsOver(run.state)) told_.insert(run.run_id);
  }
  thread_ = std::thread([this] { Loop(); });
}

void RunNotifier::Stop() {
  stopping_.store(true);
  if (thread_.joinable()) thread_.join();
}

void RunNotifier::Loop() {
  uint64_t seen = 0;
  while (!stopping_.load()) {
    seen = broker_->WaitForChange(seen, std::chrono::milliseconds(500));
    std::set<std::string> kept;
    for (const RunSummary& run : broker_->ListRunSummaries()) {
      kept.insert(run.run_id);
      if (!IsOver(run.state) || !told_.insert(run.run_id).second) continue;
      if (auto view = broker_->GetRun(run.run_id)) Tell(*view);
    }
    // Forgotten runs (pruned) are forgotten here too.
    std::erase_if(told_, [&](const std::string& id) { return !kept.count(id); });
  }
}

void RunNotifier::Tell(const RunView& view) {
  const v1::RunSpec spec = ::loads::spec::FromStored(view.spec);
  std::vector<common::NotifyTarget> targets = defaults_;
  for (const std::string& text : spec.notify()) {
    if (auto target = common::ParseNotifyTarget(text); target.ok()) targets.push_back(*target);
  }
  if (targets.empty()) return;
  common::RunNotice notice;
  const common::RunInfo info = ControllerService::ReportInfo(view, true);
  notice.report_json = view.report_json;
  notice.summary_text = common::FormatTextReport(info, view.stats);
  notice.html_report = common::FormatHtmlReport(view.report_json);
  notice.subject = "Loads: run " + view.run_id + " of " + view.test + ": " +
                   std::string(RunStateName(view.state));
  for (const std::string& line : common::SendNotices(targets, notice, settings_)) {
    std::fprintf(stderr, "loads-controller: run %s: notify %s\n", view.run_id.c_str(),
                 line.c_str());
  }
}

}  // namespace loads::controller
