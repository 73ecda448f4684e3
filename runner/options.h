#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace loads::runner {

// The command line of loads-runner, parsed and validated (but not yet acted upon).
struct RunnerOptions {
  std::string test;         // "module.Class.method", or empty with --url
  std::string url;          // --url
  std::string test_runner;  // --test-runner: an external runner command
  std::vector<int64_t> users{1};
  std::vector<int64_t> hits{1};
  std::optional<double> duration;
  std::optional<int> threads;
  std::vector<std::string> test_paths;
  std::string server_url;
  std::vector<std::string> json_outputs;
  bool quiet = false;
  double connect_timeout = 10;
  double timeout = 30;
  bool insecure = false;
  std::string controller;            // HOST:PORT of loads-controller; empty: run locally
  int workers = 1;                   // with --controller
  bool fail_on_worker_loss = false;  // --loss-policy fail
  std::string token_file;            // the controller's API token (first line)
  std::string worker_cpu;            // resource requests of launched workers (Kubernetes)
  std::string worker_memory;
  std::vector<std::pair<std::string, std::string>> metadata;  // --project-name, --user-id, --label
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

struct ParseResult {
  bool ok = false;
  std::string error;  // one line, without the program name
  RunnerOptions options;
};

// Parses argv[1..]. Every problem is reported in `error` (the first one found).
ParseResult ParseOptions(const std::vector<std::string>& args);

// Parses a cycle list "10:20:30" of integers in [1, max].
std::optional<std::vector<int64_t>> ParseCycles(const std::string& text, int64_t max);

// The --help text.
std::string Usage();

}  // namespace loads::runner
