#pragma once

#include "loads/common/live_page.h"
#include "loads/controller/broker.h"

namespace loads::controller {

// The controller's runs for the live page (loads-controller --web): the broker's views, their
// reports as ControllerService makes them, and StopRun.
//
// Thread safety: as the broker's (any thread). The broker is not owned and must outlive it.
class BrokerRunSource : public common::RunSource {
 public:
  explicit BrokerRunSource(Broker* broker) : broker_(broker) {}
  std::vector<Entry> List() override;
  std::optional<Live> Get(const std::string& id) override;
  uint64_t WaitForChange(uint64_t seen, std::chrono::milliseconds timeout) override;
  Status Stop(const std::string& id) override;

 private:
  Broker* broker_;
};

}  // namespace loads::controller
