#include "runner/live.h"

namespace loads::runner {

void LocalRunSource::Update(const common::RunInfo& info, const common::RunStats& so_far,
                            const common::Series& closed, uint64_t active_users) {
  std::lock_guard lock(mu_);
  info_ = info;
  active_users_ = active_users;
  info_.series = closed;
  stats_ = so_far;
  started_ = true;
  state_ = "running";
  ++generation_;
  changed_.notify_all();
}

void LocalRunSource::Finish(const std::string& state, const std::string& report_json) {
  std::lock_guard lock(mu_);
  state_ = state;
  final_json_ = report_json;
  active_users_ = 0;
  ++generation_;
  changed_.notify_all();
}

std::vector<common::RunSource::Entry> LocalRunSource::List() {
  std::lock_guard lock(mu_);
  Entry entry;
  entry.id = kId;
  entry.state = state_;
  entry.test = info_.test;
  if (started_) entry.started = info_.started;
  entry.hits = stats_.hits;
  entry.active_users = final_json_.empty() ? active_users_ : 0;
  entry.executions = stats_.Executions();
  return {entry};
}

std::optional<common::RunSource::Live> LocalRunSource::Get(const std::string& id) {
  if (id != kId) return std::nullopt;
  std::lock_guard lock(mu_);
  if (!final_json_.empty()) return Live{state_, true, final_json_};
  return Live{state_, false, common::FormatJsonReport(info_, stats_)};
}

uint64_t LocalRunSource::WaitForChange(uint64_t seen, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  changed_.wait_for(lock, timeout, [&] { return generation_ != seen; });
  return generation_;
}

Status LocalRunSource::Stop(const std::string& id) {
  if (id != kId) return NotFoundError("no run " + id);
  stop_->store(true);
  return OkStatus();
}

}  // namespace loads::runner
