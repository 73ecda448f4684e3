#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "loads/common/status.h"

namespace loads::common {

// A declarative test: named steps run in order by each virtual user at each execution, with no
// code to compile (docs/scenarios.md). Parsed from JSON here, where the runner and the controller
// can check it without the engine; the engine runs it (loads/worker/scenario.h).
struct ScenarioStep {
  enum class Kind { kRequest, kThink, kWsConnect, kWsSend, kWsReceive, kWsClose };
  Kind kind = Kind::kRequest;
  std::string name;  // the hit name of a request; a label in failure messages
  // kRequest
  std::string method = "GET";
  std::string url;  // absolute, or a path resolved against --server-url
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::optional<int> expect_status;
  // kThink
  std::chrono::milliseconds think{0};
  // kWsConnect (url), kWsSend (text), kWsReceive (expect: the message must equal it, if set)
  std::string text;
  std::optional<std::string> expect;
};

struct Scenario {
  std::string name;
  std::vector<ScenarioStep> steps;
  // The file's `load` object: (run option, its value as text), such as ("rate", "100"). Applied
  // to the run where the command line (or the gRPC spec) does not say (run_spec.h).
  std::vector<std::pair<std::string, std::string>> load;
};

// Parses and validates a scenario. INVALID_ARGUMENT saying why: the line and column of a JSON
// syntax error, or the field at fault ("steps[2].request.url: ...").
StatusOr<Scenario> ParseScenario(const std::string& json);

// "scenario:" + the scenario's name ("scenario:unnamed" without one).
std::string MakeScenarioName(const Scenario& scenario);

}  // namespace loads::common
