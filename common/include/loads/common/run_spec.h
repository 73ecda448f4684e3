#pragma once

// The one schema of a run: v1::RunSpec (proto/loads/v1/controller.proto). Every front end —
// loads-runner's flags, any gRPC client — produces a RunSpec; every back end — the runner's own
// engine and the controller — checks it with ValidateRunSpec and turns it into the engine's plan
// with ToPlan. RunOptions() is the table that ties each load option's flag to its field, bounds
// and default: the runner parses its flags from it, --help and docs/cli.md list it, and a test
// checks the docs against it.

#include <functional>
#include <set>
#include <string>
#include <vector>

#include "loads/common/protocol.h"
#include "loads/common/status.h"
#include "loads/common/threshold.h"
#include "loads/v1/controller.pb.h"

namespace loads::spec {

// Bounds shared by every front end.
inline constexpr int64_t kMaxUsers = 10'000'000;
inline constexpr int64_t kMaxHits = 1'000'000'000'000;  // executions per user, per cycle
inline constexpr size_t kMaxCycles = 1000;
inline constexpr double kMaxSeconds = 366.0 * 24 * 3600;  // a cycle's duration
inline constexpr double kMaxTimeoutSeconds = 3600;
inline constexpr double kMaxRate = 10'000'000;  // executions per second, the open model
inline constexpr double kMaxPauseSeconds = 86400;
inline constexpr size_t kMaxThresholds = 100;
inline constexpr size_t kMaxNotify = 10;
inline constexpr int kMaxThreads = 1024;
inline constexpr int kMaxWorkers = 1000;
inline constexpr size_t kMaxMetadata = 64;
inline constexpr size_t kMaxCommandLength = 4096;
inline constexpr size_t kMaxScenarioBytes = 1024 * 1024;
inline constexpr size_t kMaxLibraryBytes = 64 * 1024 * 1024;  // what the wire protocol carries

// One load option: how the runner's flag sets its RunSpec field.
struct RunOption {
  using ParseFn = std::function<Status(const std::string& text, v1::RunSpec* spec)>;
  const char* flag;        // "--users"
  const char* short_flag;  // "-u", or ""
  const char* field;       // the RunSpec field: "users"
  const char* value;       // how the value is written ("N[:N...]"), "" for a switch
  const char* help;        // one line
  const char* bounds;      // as the docs state them
  const char* fallback;    // the default, "" if none
  // Sets the field from the flag's text (repeatable flags add). The message of a failure says
  // what was expected, without the flag's name.
  ParseFn parse;
  // Its key in a scenario file's `load` object (ApplyScenarioLoad), or "" when a scenario
  // cannot set it.
  const char* scenario_key = "";
};
const std::vector<RunOption>& RunOptions();

// How ValidateRunSpec names a field at fault: as the gRPC field ("spec.users") or as the
// runner's flag ("--users").
enum class Naming { kProto, kFlags };

struct Validation {
  Naming naming = Naming::kProto;
  // A named test (module.Class.method) needs its library's bytes (a controller ships them);
  // the runner loads a local library from its path instead.
  bool library_required = true;
};

// Checks every field against its bounds and the fields against each other. INVALID_ARGUMENT
// naming the field (or flag) at fault, or OK.
Status ValidateRunSpec(const v1::RunSpec& spec, Validation how = {});
// A run id: 1 to 200 printable characters without spaces.
Status ValidateRunId(const std::string& run_id, const std::string& field);

// The scenario file's `load` object ({"rate": 100, "duration": 60, ...}: keys are the
// RunOptions' scenario_key) applied to the spec, for every option whose field is not in `given`
// (the fields the command line set; nullptr: those with a non-default value in the spec).
// INVALID_ARGUMENT naming "load.KEY" for a key that is not a load option or a bad value.
Status ApplyScenarioLoad(v1::RunSpec* spec, const std::set<std::string>* given);
// The closed model's defaults where the spec says nothing of the load: one user, one execution.
void ApplyDefaults(v1::RunSpec* spec);

// The run's test as its report and metrics name it: "module.Class.method", "GET URL",
// "scenario:NAME" or "external: COMMAND". REQUIRES: a valid spec.
std::string TestName(const v1::RunSpec& spec);
// The run's thresholds, parsed: once per run, not at every judgement. REQUIRES: a valid spec.
std::vector<common::Threshold> Thresholds(const v1::RunSpec& spec);
// The engine's plan for the whole run, defaults applied (threads 0 stays 0: each engine picks).
// REQUIRES: a valid spec.
common::Assignment ToPlan(const v1::RunSpec& spec);

// Lengths of time in a spec are google.protobuf.Durations: from and to seconds (nanosecond
// precision), and whether one is a valid, non-negative length (an unset one is 0).
google::protobuf::Duration ToDuration(double seconds);
double Seconds(const google::protobuf::Duration& duration);
bool IsLength(const google::protobuf::Duration& duration);

// Before durations were google.protobuf.Durations, RunSpec had doubles of seconds (duration,
// pause_min, pause_max, pacing, Stage.seconds) and int64 milliseconds (connect_timeout_ms,
// timeout_ms), at numbers now reserved. A spec parsed from such bytes (an older client, a run
// stored by an older controller) holds them as unknown fields: this moves them into their
// Durations. INVALID_ARGUMENT naming any other unknown field: a field this controller does not
// know would otherwise be dropped without a word.
Status UpgradeLegacyFields(v1::RunSpec* spec);
// A spec as a controller stored it with a run (RunView::spec, by this version or an older one):
// parsed, its legacy fields upgraded. Runs stored before an upgrade of the controller read the
// same as new ones.
v1::RunSpec FromStored(const std::string& bytes);

// Parses a cycle list "10:20:30" of integers in [1, max]; nullopt if it is not one.
std::optional<std::vector<int64_t>> ParseCycles(const std::string& text, int64_t max);
// Seconds as a decimal number in [min, max]; nullopt if it is not one.
std::optional<double> ParseSeconds(const std::string& text, double min, double max);
// Whether text is a non-negative Kubernetes resource quantity ("500m", "1", "0.5", "256Mi",
// "1G", "5e8", "512."), of at most 32 characters. The chart's values.schema.json holds the
// same rule ("quantity"); tests/testdata/quantities.json is the table both are tested with.
bool IsResourceQuantity(const std::string& text);
// The quantity's value in base units (CPUs, bytes): "500m" -> 0.5, "1Ki" -> 1024.
// REQUIRES: IsResourceQuantity(text).
double ResourceQuantityValue(const std::string& text);

}  // namespace loads::spec
