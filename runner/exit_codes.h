#pragma once

// loads-runner's exit codes, documented in --help and docs/cli.md.
namespace loads::runner {

inline constexpr int kExitOk = 0;
inline constexpr int kExitTestProblems = 1;  // some execution failed or errored, or a run failed
inline constexpr int kExitUsage = 2;
inline constexpr int kExitNotFound = 3;    // test library or scenario file not found
inline constexpr int kExitLoadFailed = 4;  // library not loadable, or built for another ABI
inline constexpr int kExitNoSuchTest = 5;
inline constexpr int kExitReportNotWritten = 6;
inline constexpr int kExitController = 7;  // the controller is unreachable or refused the run
// The run ended partial: a worker was lost, its results from then on are missing.
inline constexpr int kExitPartial = 8;
// A local run's engine process crashed, or test code kept the run from ending (a user stuck, or
// past its planned end); the report has what the engine had sent.
inline constexpr int kExitEngineFault = 9;
// The run ended and a threshold (--threshold) failed.
inline constexpr int kExitThresholds = 10;
inline constexpr int kExitInternal = 70;
inline constexpr int kExitInterrupted = 130;

}  // namespace loads::runner
