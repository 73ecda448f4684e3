#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "loads/common/status.h"

namespace loads::common {

// Where the live page gets its runs: a controller's broker, or the one local run of
// loads-runner --web.
//
// Thread safety: every method is called from the page server's threads, concurrently.
class RunSource {
 public:
  virtual ~RunSource() = default;

  struct Entry {
    std::string id;
    std::string state;  // "assigning", "running", "done", ...
    std::string test;
    std::chrono::system_clock::time_point started;  // zero: not started yet
    uint64_t hits = 0;
    uint64_t executions = 0;
    uint64_t active_users = 0;
  };
  // The runs to list, newest first (at most 100).
  virtual std::vector<Entry> List() = 0;

  struct Live {
    std::string state;
    bool over = false;
    std::string report_json;  // the JSON report as it stands (the final one once over)
  };
  // The run now, or nothing for an unknown id.
  virtual std::optional<Live> Get(const std::string& id) = 0;
  // Waits until something may have changed since `seen` (a value it returned; 0 at first), at
  // most `timeout`. Returns the value to pass next.
  virtual uint64_t WaitForChange(uint64_t seen, std::chrono::milliseconds timeout) = 0;
  // Stops the run (as a client's StopRun would). NOT_FOUND for an unknown id.
  virtual Status Stop(const std::string& id) = 0;
};

// The live web page (docs/web.md): the list of runs, and each run's report drawn by the same
// page code as the HTML report file, updated once a second over server-sent events, with a stop
// button. Served by CivetWeb on its own threads.
//
// Who may use it: with a token, every request must carry it (an `Authorization: Bearer` header,
// or the cookie set when a page is opened once as `?token=TOKEN`); without one, anyone who can
// reach the address (the controller only allows that on loopback). Stopping a run also needs the
// `X-Loads-Action: stop` header, which a page of another site cannot send.
//
// Thread safety: Start and Stop from one thread; the source must outlive Stop (or the object).
class LivePageServer {
 public:
  struct Options {
    std::string address;     // "HOST:PORT" (port 0: any free port)
    std::string token;       // empty: no token asked
    std::string read_token;  // may see the page, not stop runs (only with `token`)
    int max_streams = 16;    // viewers watching at once; more get 503
  };
  LivePageServer(RunSource* source, Options options);
  ~LivePageServer();
  LivePageServer(const LivePageServer&) = delete;
  LivePageServer& operator=(const LivePageServer&) = delete;

  // Binds and serves. INVALID_ARGUMENT / UNAVAILABLE with the reason when it cannot.
  Status Start();
  // The port bound (after Start).
  int port() const { return port_; }
  // Ends the event streams and stops serving (waits for the server's threads).
  void Stop();

  // For the server's C callbacks.
  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

}  // namespace loads::common
