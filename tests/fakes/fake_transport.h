#pragma once

#include <string>
#include <utility>
#include <vector>

#include "loads/common/protocol.h"
#include "loads/controller/broker_core.h"

namespace loads::testing {

// Records what the broker sends, instead of ZeroMQ sockets.
// Thread safety: none.
class FakeTransport : public controller::BrokerTransport {
 public:
  void Send(const std::string& route, std::string frame) override {
    sent.emplace_back(route, std::move(frame));
  }
  void Publish(const std::string& topic, std::string frame) override {
    published.emplace_back(topic, std::move(frame));
  }

  // The control messages sent to `route` since the last call, decoded; heartbeats left out.
  std::vector<common::ControlMessage> Take(const std::string& route) {
    std::vector<common::ControlMessage> out;
    std::vector<std::pair<std::string, std::string>> rest;
    for (auto& [to, frame] : sent) {
      if (to != route) {
        rest.emplace_back(to, std::move(frame));
        continue;
      }
      common::ControlMessage m;
      if (common::DecodeControl(frame, &m).ok() && m.type != common::MessageType::kHeartbeat) {
        out.push_back(std::move(m));
      }
    }
    sent = std::move(rest);
    return out;
  }

  std::vector<std::pair<std::string, std::string>> sent;       // (route, frame)
  std::vector<std::pair<std::string, std::string>> published;  // (topic, frame)
};

}  // namespace loads::testing
