#include "loads/worker/scenario.h"

#include <memory>

#include "loads/common/url.h"

namespace loads::worker {
namespace {

using common::Scenario;
using common::ScenarioStep;

// "/path" joined to a base URL (http->ws for WebSocket steps).
std::string Resolve(const std::string& url, const std::string& base, bool websocket) {
  if (url.empty() || url[0] != '/') return url;
  auto parsed = common::ParseUrl(base);
  if (!parsed.ok()) return url;  // fails in the request, with its message
  std::string scheme = parsed->scheme;
  if (websocket) scheme = parsed->Tls() ? "wss" : "ws";
  return scheme + "://" + parsed->HostHeader() + url;
}

std::shared_ptr<const Scenario>& CurrentScenario() {
  static std::shared_ptr<const Scenario> scenario;
  return scenario;
}

class ScenarioTest : public TestCase {
 public:
  void Run() {
    const Scenario& scenario = *CurrentScenario();
    WebSocket* ws = nullptr;
    for (size_t i = 0; i < scenario.steps.size(); ++i) {
      const ScenarioStep& step = scenario.steps[i];
      const std::string label =
          "steps[" + std::to_string(i) + "]" + (step.name.empty() ? "" : " (" + step.name + ")");
      switch (step.kind) {
        case ScenarioStep::Kind::kRequest: {
          RequestOptions options;
          options.headers = step.headers;
          options.body = step.body;
          options.name = step.name;
          auto response =
              session().request(step.method, Resolve(step.url, server_url(), false), options);
          if (step.expect_status) assert_equal(response.status, *step.expect_status, label);
          break;
        }
        case ScenarioStep::Kind::kThink:
          sleep(step.think);
          break;
        case ScenarioStep::Kind::kWsConnect:
          ws = &create_ws(Resolve(step.url, server_url(), true));
          break;
        case ScenarioStep::Kind::kWsSend:
          if (!ws) fail(label + ": no WebSocket is open");
          ws->send(step.text);
          break;
        case ScenarioStep::Kind::kWsReceive: {
          if (!ws) fail(label + ": no WebSocket is open");
          auto message = ws->receive();
          assert_true(message.has_value(), label + ": the server closed the WebSocket");
          if (step.expect) assert_equal(*message, *step.expect, label);
          break;
        }
        case ScenarioStep::Kind::kWsClose:
          if (ws) ws->close();
          ws = nullptr;
          break;
      }
    }
  }
};

}  // namespace

TestSpec MakeScenarioTest(Scenario scenario) {
  const std::string name = common::MakeScenarioName(scenario);
  CurrentScenario() = std::make_shared<const Scenario>(std::move(scenario));
  return TestSpec{
      name,
      []() -> std::unique_ptr<TestCase> { return std::make_unique<ScenarioTest>(); },
      [](TestCase& test) { static_cast<ScenarioTest&>(test).Run(); },
  };
}

}  // namespace loads::worker
