#include "loads/common/scenario.h"

#include <memory>
#include <nlohmann/json.hpp>

#include "loads/common/url.h"

namespace loads::common {
namespace {

using nlohmann::json;

// Checks one step object's fields; every problem names its path.
class StepReader {
 public:
  StepReader(const json& object, std::string path, std::string* error)
      : object_(object), path_(std::move(path)), error_(error) {}

  bool Fail(const std::string& field, const std::string& what) {
    *error_ = path_ + (field.empty() ? "" : "." + field) + ": " + what;
    return false;
  }
  bool OnlyKeys(std::initializer_list<const char*> keys) {
    for (const auto& [key, value] : object_.items()) {
      bool known = false;
      for (const char* k : keys) known = known || key == k;
      if (!known) return Fail(key, "unknown field");
    }
    return true;
  }
  bool String(const char* key, bool required, std::string* out) {
    if (!object_.contains(key)) return required ? Fail(key, "required") : true;
    if (!object_[key].is_string()) return Fail(key, "expected a string");
    *out = object_[key].get<std::string>();
    return true;
  }

 private:
  const json& object_;
  std::string path_;
  std::string* error_;
};

bool ReadStep(const json& entry, size_t index, ScenarioStep* step, std::string* error) {
  const std::string path = "steps[" + std::to_string(index) + "]";
  if (!entry.is_object() || entry.size() != 1) {
    *error = path +
             ": expected an object with one key: request, think, ws_connect, ws_send, "
             "ws_receive or ws_close";
    return false;
  }
  const std::string kind = entry.begin().key();
  const json& body = entry.begin().value();
  const std::string where = path + "." + kind;
  if (kind == "think") {
    if (!body.is_number() || body.get<double>() < 0 || body.get<double>() > 3600) {
      *error = where + ": expected seconds, 0 to 3600";
      return false;
    }
    step->kind = ScenarioStep::Kind::kThink;
    step->think = std::chrono::milliseconds(static_cast<int64_t>(body.get<double>() * 1000));
    return true;
  }
  if (!body.is_object()) {
    *error = where + ": expected an object";
    return false;
  }
  StepReader r(body, where, error);
  if (kind == "request") {
    step->kind = ScenarioStep::Kind::kRequest;
    if (!r.OnlyKeys({"method", "url", "headers", "body", "json", "expect_status", "name"}) ||
        !r.String("url", true, &step->url) || !r.String("method", false, &step->method) ||
        !r.String("name", false, &step->name) || !r.String("body", false, &step->body)) {
      return false;
    }
    if (step->url.empty() || (step->url[0] != '/' && !common::ParseUrl(step->url).ok())) {
      return r.Fail("url", "expected an absolute http(s) URL or a path starting with /");
    }
    if (body.contains("json")) {
      if (body.contains("body")) return r.Fail("json", "give body or json, not both");
      step->body = body["json"].dump();
      step->headers.emplace_back("Content-Type", "application/json");
    }
    if (body.contains("headers")) {
      if (!body["headers"].is_object()) return r.Fail("headers", "expected an object");
      for (const auto& [name, value] : body["headers"].items()) {
        if (!value.is_string()) return r.Fail("headers." + name, "expected a string");
        step->headers.emplace_back(name, value.get<std::string>());
      }
    }
    if (body.contains("expect_status")) {
      const json& status = body["expect_status"];
      if (!status.is_number_integer() || status.get<int>() < 100 || status.get<int>() > 999) {
        return r.Fail("expect_status", "expected an HTTP status code");
      }
      step->expect_status = status.get<int>();
    }
    return true;
  }
  if (kind == "ws_connect") {
    step->kind = ScenarioStep::Kind::kWsConnect;
    if (!r.OnlyKeys({"url"}) || !r.String("url", true, &step->url)) return false;
    if (step->url[0] != '/' && !common::ParseUrl(step->url).ok()) {
      return r.Fail("url", "expected an absolute ws(s) URL or a path starting with /");
    }
    return true;
  }
  if (kind == "ws_send") {
    step->kind = ScenarioStep::Kind::kWsSend;
    return r.OnlyKeys({"text"}) && r.String("text", true, &step->text);
  }
  if (kind == "ws_receive") {
    step->kind = ScenarioStep::Kind::kWsReceive;
    std::string expect;
    if (!r.OnlyKeys({"expect"}) || !r.String("expect", false, &expect)) return false;
    if (body.contains("expect")) step->expect = expect;
    return true;
  }
  if (kind == "ws_close") {
    step->kind = ScenarioStep::Kind::kWsClose;
    return r.OnlyKeys({});
  }
  *error = path + ": unknown step '" + kind + "'";
  return false;
}

std::optional<Scenario> Parse(const std::string& text, std::string* error) {
  json doc;
  try {
    doc = json::parse(text);
  } catch (const json::exception& e) {
    // A syntax error names the line and column; a number too large for a double (1e999) is
    // refused too (found by fuzz/fuzz_scenario).
    *error = std::string("not valid JSON: ") + e.what();
    return std::nullopt;
  }
  if (!doc.is_object()) {
    *error = "(scenario): expected an object with \"name\" and \"steps\"";
    return std::nullopt;
  }
  for (const auto& [key, value] : doc.items()) {
    if (key != "name" && key != "steps" && key != "load") {
      *error = key + ": unknown field";
      return std::nullopt;
    }
  }
  Scenario scenario;
  if (doc.contains("load")) {
    // How hard, as the run options say it: each key a run option's name, each value its text
    // (checked with the option itself, loads/common/run_spec.h: ApplyScenarioLoad).
    const json& load = doc["load"];
    if (!load.is_object()) {
      *error = "load: expected an object such as {\"rate\": 100, \"duration\": 60}";
      return std::nullopt;
    }
    for (const auto& [key, value] : load.items()) {
      std::string option_text;
      if (value.is_number()) {
        option_text = value.dump();
      } else if (value.is_string()) {
        option_text = value.get<std::string>();
      } else if (key == "thresholds" && value.is_array()) {
        // Thresholds are a list of expressions, each one its own entry.
        for (const auto& item : value) {
          if (!item.is_string()) {
            *error = "load.thresholds: expected an array of strings such as [\"p99<250ms\"]";
            return std::nullopt;
          }
          scenario.load.emplace_back(key, item.get<std::string>());
        }
        continue;
      } else if (value.is_array() && !value.empty()) {
        // [10, 20] for cycles and pauses: "10:20".
        for (const auto& item : value) {
          if (!item.is_number()) {
            *error = "load." + key + ": expected a number, a string or an array of numbers";
            return std::nullopt;
          }
          option_text += (option_text.empty() ? "" : ":") + item.dump();
        }
      } else {
        *error = "load." + key + ": expected a number, a string or an array of numbers";
        return std::nullopt;
      }
      scenario.load.emplace_back(key, option_text);
    }
  }
  if (doc.contains("name")) {
    if (!doc["name"].is_string()) {
      *error = "name: expected a string";
      return std::nullopt;
    }
    scenario.name = doc["name"].get<std::string>();
  }
  if (!doc.contains("steps") || !doc["steps"].is_array() || doc["steps"].empty()) {
    *error = "steps: expected a non-empty array";
    return std::nullopt;
  }
  for (size_t i = 0; i < doc["steps"].size(); ++i) {
    ScenarioStep step;
    if (!ReadStep(doc["steps"][i], i, &step, error)) return std::nullopt;
    scenario.steps.push_back(std::move(step));
  }
  return scenario;
}

}  // namespace

StatusOr<Scenario> ParseScenario(const std::string& json) {
  std::string error;
  std::optional<Scenario> scenario = Parse(json, &error);
  if (!scenario) return InvalidArgumentError(error);
  return *std::move(scenario);
}

std::string MakeScenarioName(const Scenario& scenario) {
  return "scenario:" + (scenario.name.empty() ? "unnamed" : scenario.name);
}

}  // namespace loads::common
