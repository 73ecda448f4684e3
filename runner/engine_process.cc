// The engine process of a local run (runner/engine_process.h): the child's side, which runs the
// engine and streams what it says, and the parent's, which reads it back.

#include "runner/engine_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string_view>
#include <type_traits>

#include "loads/common/snapshot.h"
#include "loads/worker/crash.h"

namespace loads::runner {
namespace {

using Event = EngineProcess::Event;

// Frame kinds on the data pipe.
constexpr char kProgressFrame = 'P';
constexpr char kIntervalFrame = 'I';
constexpr char kStuckFrame = 'W';
constexpr char kLoadFailedFrame = 'L';
constexpr char kEndFrame = 'E';

// Both ends are this binary, so plain structs go as their bytes.
static_assert(std::is_trivially_copyable_v<worker::Progress>);
static_assert(std::is_trivially_copyable_v<worker::StuckUser>);
static_assert(std::is_trivially_copyable_v<Event::End>);

// The report is built from intervals; a crash loses at most the last one.
constexpr auto kIntervalPeriod = std::chrono::milliseconds(250);

// ---- the child ----

int g_data_fd = -1;
int g_crash_fd = -1;
std::atomic<bool> g_stop{false};
bool g_loading = false;
const char* g_test_name = "";

std::string InitializerThrew(const std::string& what) {
  return std::string("cannot load the test library of ") + g_test_name +
         ": a global initializer threw (" + what + ")";
}

void OnStopSignal(int) { g_stop.store(true); }

void WriteAll(int fd, const char* data, size_t size) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;  // the parent is gone; PR_SET_PDEATHSIG ends this process
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
}

void SendFrame(char kind, std::string_view payload) {
  std::string frame(5 + payload.size(), '\0');
  const auto size = static_cast<uint32_t>(payload.size());
  std::memcpy(frame.data(), &size, 4);
  frame[4] = kind;
  std::memcpy(frame.data() + 5, payload.data(), payload.size());
  WriteAll(g_data_fd, frame.data(), frame.size());
}

template <typename T>
void SendStruct(char kind, const T& value) {
  SendFrame(kind, std::string_view(reinterpret_cast<const char*>(&value), sizeof(value)));
}

void SendLoadFailed(worker::LoadError error, const std::string& message) {
  std::string payload(1, static_cast<char>(error));
  SendFrame(kLoadFailedFrame, payload + message);
}

// Called from the crash handler: one write of one line, which a pipe keeps whole.
void WriteCrashLine(const char* text, size_t size) {
  char line[PIPE_BUF];
  const size_t n = size < sizeof(line) - 1 ? size : sizeof(line) - 1;
  std::memcpy(line, text, n);
  line[n] = '\n';
  [[maybe_unused]] ssize_t ignored = ::write(g_crash_fd, line, n + 1);
}

std::string CurrentExceptionText() {
  const std::exception_ptr current = std::current_exception();
  if (!current) return "std::terminate was called without an exception";
  try {
    std::rethrow_exception(current);
  } catch (const std::exception& e) {
    return std::string("uncaught exception: ") + e.what();
  } catch (...) {
    return "uncaught exception that is not a std::exception";
  }
}

// A library initializer that throws ends in std::terminate when the exception cannot cross
// dlopen: that is a load failure, told as such. Later, the line precedes the SIGABRT report.
[[noreturn]] void OnTerminate() {
  const std::string what = CurrentExceptionText();
  if (g_loading) {
    SendLoadFailed(worker::LoadError::kLoadFailed, InitializerThrew(what));
    _exit(0);
  }
  WriteCrashLine(what.data(), what.size());
  std::abort();
}

[[noreturn]] void RunChild(const EngineProcess::Job& job) {
  ::signal(SIGINT, SIG_IGN);  // a terminal's Ctrl-C goes to the parent, which decides
  ::signal(SIGPIPE, SIG_IGN);
  struct sigaction stop {};
  stop.sa_handler = OnStopSignal;
  sigemptyset(&stop.sa_mask);
  sigaction(SIGUSR1, &stop, nullptr);
  sigaction(SIGTERM, &stop, nullptr);

  static const std::string test_name = job.test;
  g_test_name = test_name.c_str();
  worker::InstallCrashReport(WriteCrashLine, g_test_name);
  std::set_terminate(OnTerminate);

  g_loading = true;
  worker::LoadResult loaded;
  try {
    loaded = job.load();
  } catch (const std::exception& e) {
    loaded.error = worker::LoadError::kLoadFailed;
    loaded.message = InitializerThrew(std::string("uncaught exception: ") + e.what());
  }
  g_loading = false;
  if (loaded.error != worker::LoadError::kNone) {
    SendLoadFailed(loaded.error, loaded.message);
    _exit(0);
  }

  worker::Engine engine(job.engine);
  uint64_t sequence = 0;
  engine.OnInterval(
      [&](const worker::Interval& interval) {
        common::Snapshot snapshot;
        snapshot.run_id = "local";
        snapshot.worker_id = "engine";
        snapshot.sequence = ++sequence;
        snapshot.interval_start = common::UnixNanos(interval.start);
        snapshot.interval_end = common::UnixNanos(interval.end);
        snapshot.final = interval.final;
        snapshot.target_rate = interval.target_rate;
        snapshot.active_users =
            interval.final ? 0 : static_cast<uint64_t>(std::max<int64_t>(0, worker::ActiveUsers()));
        snapshot.stats = interval.stats;
        SendFrame(kIntervalFrame, common::EncodeSnapshot(snapshot));
      },
      kIntervalPeriod);
  engine.OnStuck([](const worker::StuckUser& stuck) { SendStruct(kStuckFrame, stuck); });
  const worker::RunResult result = engine.Run(
      loaded.test, g_stop,
      [](const worker::Progress& progress) { SendStruct(kProgressFrame, progress); },
      job.progress_interval);

  Event::End end;
  end.started = result.info.started;
  end.duration_seconds = result.info.duration_seconds;
  end.interrupted = result.info.interrupted;
  end.threads = result.info.threads;
  end.max_users = result.info.load.max_users;
  SendStruct(kEndFrame, end);
  std::fflush(nullptr);
  // No destructors: test libraries stay loaded, and their static objects are theirs to keep.
  _exit(0);
}

void SetNonBlocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

// Reads what fd has now; closes it (and sets it to -1) at its end.
void Drain(int* fd, std::string* into) {
  char buffer[65536];
  while (*fd >= 0) {
    const ssize_t n = ::read(*fd, buffer, sizeof(buffer));
    if (n > 0) {
      into->append(buffer, static_cast<size_t>(n));
    } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
      ::close(*fd);
      *fd = -1;
    } else if (errno == EAGAIN) {
      return;
    }
  }
}

}  // namespace

Status EngineProcess::Start(const Job& job) {
  int data[2];
  int crash[2];
  if (pipe2(data, O_CLOEXEC) != 0) {
    return InternalError(std::string("cannot make a pipe for the engine process: ") +
                         std::strerror(errno));
  }
  if (pipe2(crash, O_CLOEXEC) != 0) {
    const int error = errno;
    ::close(data[0]);
    ::close(data[1]);
    return InternalError(std::string("cannot make a pipe for the engine process: ") +
                         std::strerror(error));
  }
  const pid_t parent = getpid();
  std::fflush(nullptr);  // or the child would print what the parent buffered a second time
  pid_ = fork();
  if (pid_ < 0) {
    const int error = errno;
    for (int fd : {data[0], data[1], crash[0], crash[1]}) ::close(fd);
    return InternalError(std::string("cannot start the engine process: ") + std::strerror(error));
  }
  if (pid_ == 0) {
    // Ends with the runner, however the runner ends.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(0);
    ::close(data[0]);
    ::close(crash[0]);
    g_data_fd = data[1];
    g_crash_fd = crash[1];
    RunChild(job);
  }
  ::close(data[1]);
  ::close(crash[1]);
  data_fd_ = data[0];
  crash_fd_ = crash[0];
  SetNonBlocking(data_fd_);
  SetNonBlocking(crash_fd_);
  return OkStatus();
}

std::vector<Event> EngineProcess::Poll(std::chrono::milliseconds timeout) {
  std::vector<Event> events;
  if (finished_) return events;
  pollfd fds[2];
  nfds_t count = 0;
  for (int fd : {data_fd_, crash_fd_}) {
    if (fd >= 0) fds[count++] = {fd, POLLIN, 0};
  }
  if (count > 0) ::poll(fds, count, static_cast<int>(timeout.count()));
  Drain(&data_fd_, &data_);
  Drain(&crash_fd_, &crash_);
  // Both pipes end when the process does (what it execs does not inherit them). A process that
  // test code forked without exec could keep them open: the child's exit ends it all the same.
  int status = 0;
  const bool pipes_closed = data_fd_ < 0 && crash_fd_ < 0;
  if (::waitpid(pid_, &status, pipes_closed ? 0 : WNOHANG) == pid_) {
    Drain(&data_fd_, &data_);  // everything the child wrote is in the pipes by now
    Drain(&crash_fd_, &crash_);
    for (int* fd : {&data_fd_, &crash_fd_}) {
      if (*fd >= 0) ::close(*fd);
      *fd = -1;
    }
    finished_ = true;
    exit_.signaled = WIFSIGNALED(status);
    exit_.signal = exit_.signaled ? WTERMSIG(status) : 0;
    exit_.status = WIFEXITED(status) ? WEXITSTATUS(status) : 0;
  }
  Parse(&events);
  return events;
}

void EngineProcess::Parse(std::vector<Event>* events) {
  size_t at = 0;
  while (data_.size() - at >= 5) {
    uint32_t size = 0;
    std::memcpy(&size, data_.data() + at, 4);
    if (data_.size() - at - 5 < size) break;
    const char kind = data_[at + 4];
    const std::string_view payload(data_.data() + at + 5, size);
    at += 5 + size;
    Event event;
    const auto copy = [&](auto* into) {
      if (payload.size() != sizeof(*into)) return false;
      std::memcpy(into, payload.data(), sizeof(*into));
      return true;
    };
    bool ok = false;
    switch (kind) {
      case kProgressFrame:
        event.kind = Event::Kind::kProgress;
        ok = copy(&event.progress);
        break;
      case kStuckFrame:
        event.kind = Event::Kind::kStuck;
        ok = copy(&event.stuck);
        break;
      case kEndFrame:
        event.kind = Event::Kind::kEnd;
        ok = copy(&event.end);
        break;
      case kLoadFailedFrame:
        event.kind = Event::Kind::kLoadFailed;
        ok = !payload.empty();
        if (ok) {
          event.load_error = static_cast<worker::LoadError>(payload[0]);
          event.text = std::string(payload.substr(1));
        }
        break;
      case kIntervalFrame: {
        event.kind = Event::Kind::kInterval;
        common::Snapshot snapshot;
        ok = common::DecodeSnapshot(payload, &snapshot).ok();
        if (ok) {
          event.interval.start =
              common::FromUnixNanos(static_cast<int64_t>(snapshot.interval_start));
          event.interval.end = common::FromUnixNanos(static_cast<int64_t>(snapshot.interval_end));
          event.interval.final = snapshot.final;
          event.interval.target_rate = snapshot.target_rate;
          event.active_users = static_cast<int64_t>(snapshot.active_users);
          event.interval.stats = std::move(snapshot.stats);
        }
        break;
      }
    }
    // Both ends are this binary: a frame that does not parse is a bug, and is said so.
    if (!ok) {
      event = Event();
      event.kind = Event::Kind::kCrash;
      event.text = std::string("the engine process sent a malformed frame (kind ") + kind + ")";
    }
    events->push_back(std::move(event));
  }
  data_.erase(0, at);

  size_t newline;
  while ((newline = crash_.find('\n')) != std::string::npos) {
    Event event;
    event.kind = Event::Kind::kCrash;
    event.text = crash_.substr(0, newline);
    crash_.erase(0, newline + 1);
    events->push_back(std::move(event));
  }
  if (finished_ && !crash_.empty()) {
    Event event;
    event.kind = Event::Kind::kCrash;
    event.text = std::move(crash_);
    crash_.clear();
    events->push_back(std::move(event));
  }
}

void EngineProcess::RequestStop() {
  if (pid_ > 0 && !finished_) ::kill(pid_, SIGUSR1);
}

void EngineProcess::Kill() {
  if (pid_ > 0 && !finished_) ::kill(pid_, SIGKILL);
}

EngineProcess::~EngineProcess() {
  if (pid_ > 0 && !finished_) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  for (int fd : {data_fd_, crash_fd_}) {
    if (fd >= 0) ::close(fd);
  }
}

std::string DescribeSignal(int sig) {
  const char* abbreviation = sigabbrev_np(sig);
  const char* description = strsignal(sig);
  std::string out = abbreviation ? std::string("SIG") + abbreviation : std::to_string(sig);
  if (description) out += std::string(" (") + description + ")";
  return out;
}

}  // namespace loads::runner
