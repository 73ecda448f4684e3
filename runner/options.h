#pragma once

#include <chrono>
#include <set>
#include <string>
#include <vector>

#include "loads/common/notify.h"
#include "loads/common/status.h"
#include "loads/v1/controller.pb.h"

namespace loads::runner {

// The command line of loads-runner, parsed and validated (but not yet acted upon). The run
// itself is a RunSpec (loads/common/run_spec.h), filled from the flags of the shared option
// table; the rest says where the test is found, where the report goes and which controller, if
// any, runs it.
struct RunnerOptions {
  v1::RunSpec spec;
  // A named test's library is looked up here (then $LOADS_TEST_PATH, then the current folder).
  std::vector<std::string> test_paths;
  std::string scenario_path;  // SCENARIO.json, read when the run starts
  // The RunSpec fields the command line set: a scenario's `load` object fills the others.
  std::set<std::string> given_fields;
  std::vector<std::string> json_outputs;
  std::vector<std::string> junit_outputs;  // --output junit:FILE
  std::vector<std::string> csv_outputs;    // --output csv:FILE
  std::vector<std::string> html_outputs;   // --output html:FILE
  bool quiet = false;
  // Local runs: a user that holds its engine thread this long is reported (zero: never).
  std::chrono::milliseconds stuck_limit{2000};
  std::vector<std::string> allow_targets;  // --allow-target (local runs)
  std::string tls_ca, tls_cert, tls_key;   // gRPC over TLS to the controller (and mTLS)
  std::string web;                         // --web HOST:PORT, a local run's live page; empty: none
  common::NotifySettings notify;           // --smtp, --smtp-from, --notify-timeout (local runs)
  // Local runs: how long a stopped engine has to send its report before it is killed.
  std::chrono::milliseconds stop_timeout{5000};
  std::string controller;  // HOST:PORT of loads-controller; empty: run locally
  std::string token_file;  // the controller's API token (first line)
  // How long a watched run waits for an unreachable controller (a restart) before giving up.
  std::chrono::seconds reconnect_timeout{300};
  // Cluster operations (with --controller), instead of a run.
  bool detach = false;   // start the run and return its id
  std::string attach;    // watch that run and print its report
  std::string stop_run;  // stop that run
  bool list_runs = false;
  bool ping = false;
  bool check_cluster = false;  // one execution of --url on every idle worker
  bool help = false;
  bool version = false;
};

// Parses argv[1..]. INVALID_ARGUMENT with one line naming the flag at fault (the first problem
// found), or the options. The run's fields are validated here (loads::spec::ValidateRunSpec),
// except for a scenario file's run, checked once the file (and its `load` object) is read.
StatusOr<RunnerOptions> ParseOptions(const std::vector<std::string>& args);

// The --help text.
std::string Usage();

}  // namespace loads::runner
