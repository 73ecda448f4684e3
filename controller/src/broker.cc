#include "loads/controller/broker.h"

#include <charconv>
#include <cstdio>
#include <zmq.hpp>

namespace loads::controller {
namespace {

// How often changed runs are written to the state store (and the acknowledgements of what they
// merged sent): a group commit, so that a thousand snapshots a second cost ten writes.
constexpr auto kCommitInterval = std::chrono::milliseconds(100);

class SystemClock : public Clock {
 public:
  std::chrono::steady_clock::time_point Now() const override {
    return std::chrono::steady_clock::now();
  }
  std::chrono::system_clock::time_point WallNow() const override {
    return std::chrono::system_clock::now();
  }
};

// "<started ns>/<run id>" of the last run of a page: where the next page starts.
std::string PageToken(const RunView& run) {
  return std::to_string(run.started.time_since_epoch().count()) + "/" + run.run_id;
}

}  // namespace

Clock* RealClock() {
  static SystemClock clock;
  return &clock;
}

// Frames the core sends, queued under the broker's mutex and sent by its thread.
class Broker::Transport : public BrokerTransport {
 public:
  void Send(const std::string& route, std::string frame) override {
    outbox.emplace_back(route, std::move(frame));
  }
  void Publish(const std::string& topic, std::string frame) override {
    if (publishing) published.emplace_back(topic, std::move(frame));
  }
  bool publishing = false;
  std::deque<std::pair<std::string, std::string>> outbox;     // (route, frame)
  std::deque<std::pair<std::string, std::string>> published;  // (run id, snapshot)
};

struct Broker::Sockets {
  zmq::context_t context{1};
  // libzmq asks this socket whether a CURVE peer may connect (ZAP, RFC 27).
  zmq::socket_t zap{context, zmq::socket_type::rep};
  zmq::socket_t router{context, zmq::socket_type::router};
  zmq::socket_t publisher{context, zmq::socket_type::pub};
};

Broker::Broker(BrokerOptions options, std::unique_ptr<StateStore> store, Clock* clock)
    : options_(std::move(options)),
      store_(std::move(store)),
      clock_(clock),
      transport_(std::make_unique<Transport>()),
      sockets_(std::make_unique<Sockets>()) {}

Broker::~Broker() {
  {
    MutexLock lock(mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

Status Broker::Start() {
  std::vector<RunRecord> restored;
  if (store_) {
    auto loaded = store_->Load();
    if (!loaded.ok()) return loaded.status();
    restored = std::move(*loaded);
  }
  const bool curve = !options_.curve_secret_key.empty();
  // Encrypted, and only peers the ZAP handler lets in (HandleZap).
  const auto secure = [&](zmq::socket_t& socket) {
    if (!curve) return;
    socket.set(zmq::sockopt::curve_server, true);
    socket.set(zmq::sockopt::curve_secretkey, options_.curve_secret_key);
    socket.set(zmq::sockopt::zap_domain, "loads");
  };
  try {
    if (curve) sockets_->zap.bind("inproc://zeromq.zap.01");
    zmq::socket_t& router = sockets_->router;
    secure(router);
    router.set(zmq::sockopt::linger, 0);
    router.set(zmq::sockopt::maxmsgsize, int64_t{80} << 20);
    // A second connection may not take over a connected worker's routing id: its messages
    // would be taken for the first one's.
    router.set(zmq::sockopt::router_handover, 0);
    // ZMTP heartbeats close connections whose peer vanished, so that a worker reconnecting
    // after a network cut is not refused as a duplicate of its own dead connection.
    const int beat = static_cast<int>(std::max<int64_t>(100, options_.heartbeat.count()));
    router.set(zmq::sockopt::heartbeat_ivl, beat);
    router.set(zmq::sockopt::heartbeat_timeout, static_cast<int>(options_.worker_timeout.count()));
    router.bind(options_.bind);
    endpoint_ = router.get(zmq::sockopt::last_endpoint);
  } catch (const zmq::error_t& e) {
    return UnavailableError("cannot bind " + options_.bind + ": " + e.what());
  }
  if (!options_.publish.empty()) {
    try {
      secure(sockets_->publisher);
      sockets_->publisher.set(zmq::sockopt::linger, 0);
      // A slow subscriber loses messages rather than holding the controller up.
      sockets_->publisher.set(zmq::sockopt::sndhwm, 100'000);
      sockets_->publisher.bind(options_.publish);
      publish_endpoint_ = sockets_->publisher.get(zmq::sockopt::last_endpoint);
    } catch (const zmq::error_t& e) {
      return UnavailableError("cannot bind " + options_.publish + ": " + e.what());
    }
  }
  {
    MutexLock lock(mu_);
    transport_->publishing = !publish_endpoint_.empty();
    core_ = std::make_unique<BrokerCore>(options_, clock_, transport_.get(), metrics_);
    core_->SetReportFormatter(formatter_);
    core_->SetAbortJudges(judges_);
    core_->Restore(std::move(restored));
  }
  thread_ = std::thread([this] { Loop(); });
  return OkStatus();
}

std::string Broker::endpoint() const { return endpoint_; }
std::string Broker::publish_endpoint() const { return publish_endpoint_; }

uint64_t Broker::dropped() const {
  MutexLock lock(mu_);
  return core_ ? core_->dropped() : 0;
}

Status Broker::StartRun(const std::string& run_id, RunRequest request) {
  MutexLock lock(mu_);
  Status status = core_->StartRun(run_id, std::move(request));
  changed_.notify_all();
  return status;
}

Status Broker::StopRun(const std::string& run_id) {
  MutexLock lock(mu_);
  Status status = core_->StopRun(run_id);
  changed_.notify_all();
  return status;
}

Status Broker::FailRun(const std::string& run_id, const std::string& why) {
  MutexLock lock(mu_);
  Status status = core_->FailRun(run_id, why);
  changed_.notify_all();
  return status;
}

std::vector<RunSummary> Broker::ListRunSummaries() const {
  MutexLock lock(mu_);
  return core_->ListRunSummaries();
}

bool Broker::RetireWorker(const std::string& worker_id) {
  MutexLock lock(mu_);
  const bool retired = core_->RetireWorker(worker_id);
  changed_.notify_all();
  return retired;
}

std::optional<RunView> Broker::GetRun(const std::string& run_id) const {
  MutexLock lock(mu_);
  return core_->GetRun(run_id);
}

StatusOr<RunPage> Broker::ListRuns(std::optional<RunState> state, const std::string& page_token,
                                   size_t page_size) const {
  // The token names the last run of the previous page by its start time and id, the order of
  // the list, so that runs started meanwhile do not shift the pages.
  std::optional<std::pair<int64_t, std::string>> after;
  if (!page_token.empty()) {
    const size_t slash = page_token.find('/');
    int64_t ns = 0;
    const char* end = page_token.data() + std::min(slash, page_token.size());
    auto [ptr, ec] = std::from_chars(page_token.data(), end, ns);
    if (slash == std::string::npos || ec != std::errc() || ptr != end) {
      return InvalidArgumentError("page_token: not a token this controller gave");
    }
    after.emplace(ns, page_token.substr(slash + 1));
  }
  RunPage page;
  MutexLock lock(mu_);
  for (const RunView* run : core_->Runs()) {
    if (state && run->state != *state) continue;
    if (after) {
      const int64_t ns = run->started.time_since_epoch().count();
      // Newest first, then by id: skip everything up to and including the token's run.
      if (ns > after->first || (ns == after->first && run->run_id <= after->second)) continue;
    }
    if (page.runs.size() == page_size) {
      page.next_page_token = PageToken(page.runs.back());
      break;
    }
    page.runs.push_back(*run);
  }
  return page;
}

std::vector<WorkerView> Broker::ListWorkers() const {
  MutexLock lock(mu_);
  return core_->ListWorkers();
}

size_t Broker::IdleWorkers() const {
  MutexLock lock(mu_);
  return core_->IdleWorkers();
}

// The waits are loops rather than wait_for with a predicate: a lambda reading core_ would be a
// function of its own to the thread-safety analysis, not known to run under mu_.
bool Broker::WaitForRun(const std::string& run_id, std::chrono::milliseconds timeout) const {
  MutexLock lock(mu_);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!core_->IsRunOver(run_id)) {
    if (changed_.wait_until(lock.native(), deadline) == std::cv_status::timeout) {
      return core_->IsRunOver(run_id);
    }
  }
  return true;
}

uint64_t Broker::WaitForChange(uint64_t seen, std::chrono::milliseconds timeout) const {
  MutexLock lock(mu_);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (core_->generation() == seen && !stopping_) {
    if (changed_.wait_until(lock.native(), deadline) == std::cv_status::timeout) break;
  }
  return core_->generation();
}

void Broker::Commit(CommitBatch batch) {
  bool ok = true;
  if (store_ && (!batch.runs.empty() || !batch.deleted.empty())) {
    Status status = store_->Save(batch.runs);
    if (status.ok() && !batch.deleted.empty()) status = store_->Delete(batch.deleted);
    ok = status.ok();
    const auto now = clock_->Now();
    if (!ok && now - last_store_error_ > std::chrono::seconds(5)) {
      last_store_error_ = now;
      std::fprintf(stderr,
                   "loads-controller: cannot write the state to %s: %s (results are held and "
                   "not acknowledged until it works)\n",
                   store_->Describe().c_str(), status.message().c_str());
    }
  }
  MutexLock lock(mu_);
  core_->Committed(std::move(batch), ok);
}

// One ZAP request (RFC 27): version, request id, domain, address, identity, mechanism, then the
// client's 32-byte public key. Answered 200 for an allowed key, 400 otherwise (counted).
void Broker::HandleZap() {
  zmq::socket_t& zap = sockets_->zap;
  std::vector<zmq::message_t> request;
  while (true) {
    zmq::message_t part;
    if (!zap.recv(part, zmq::recv_flags::dontwait)) return;
    const bool more = part.more();
    request.push_back(std::move(part));
    if (!more) break;
  }
  if (request.size() < 6) return;  // not libzmq's: nothing to answer
  bool allowed = false;
  std::string key = "(none)";
  if (request.size() >= 7 && request[5].to_string() == "CURVE" && request[6].size() == 32) {
    char z85[41];
    zmq_z85_encode(z85, static_cast<const uint8_t*>(request[6].data()), 32);
    key = z85;
    allowed = options_.curve_any_peer || options_.curve_allowed.count(key) > 0;
  }
  const std::string status = allowed ? "200" : "400";
  const std::string text = allowed ? "OK" : "public key not allowed";
  zap.send(zmq::buffer(std::string("1.0")), zmq::send_flags::sndmore);
  zap.send(request[1], zmq::send_flags::sndmore);
  zap.send(zmq::buffer(status), zmq::send_flags::sndmore);
  zap.send(zmq::buffer(text), zmq::send_flags::sndmore);
  zap.send(zmq::buffer(key), zmq::send_flags::sndmore);  // the user id
  zap.send(zmq::buffer(std::string()), zmq::send_flags::none);
  if (allowed) return;
  ++curve_refused_;
  if (metrics_) metrics_->Dropped("curve_refused");
  const auto now = clock_->Now();
  if (now - last_refusal_log_ < std::chrono::seconds(1)) return;
  last_refusal_log_ = now;
  // The public key is not a secret: it says who was refused.
  std::fprintf(stderr,
               "loads-controller: refused a CURVE connection from %s: public key %s is not "
               "allowed (%llu refused so far)\n",
               request[3].to_string().c_str(), key.c_str(),
               static_cast<unsigned long long>(curve_refused_));
}

void Broker::Loop() {
  zmq::socket_t& router = sockets_->router;
  auto next_commit = clock_->Now();
  std::vector<zmq::message_t> parts;
  std::deque<std::pair<std::string, std::string>> outbox, published;
  const bool curve = !options_.curve_secret_key.empty();
  while (true) {
    zmq::pollitem_t items[] = {{router.handle(), 0, ZMQ_POLLIN, 0},
                               {sockets_->zap.handle(), 0, ZMQ_POLLIN, 0}};
    try {
      zmq::poll(items, curve ? 2 : 1, std::chrono::milliseconds(10));
    } catch (const zmq::error_t&) {
      items[0].revents = items[1].revents = 0;  // EINTR: a signal; poll again
    }
    if (curve && (items[1].revents & ZMQ_POLLIN)) HandleZap();
    std::optional<CommitBatch> batch;
    {
      MutexLock lock(mu_);
      if (stopping_) break;
      if (items[0].revents & ZMQ_POLLIN) {
        while (true) {
          parts.clear();
          zmq::message_t part;
          if (!router.recv(part, zmq::recv_flags::dontwait)) break;
          parts.push_back(std::move(part));
          while (parts.back().more()) {
            zmq::message_t next;
            if (!router.recv(next, zmq::recv_flags::dontwait)) break;
            parts.push_back(std::move(next));
          }
          if (parts.size() != 2) {
            core_->OnMultipart(parts.size() - 1);
            continue;
          }
          core_->OnFrame(
              parts[0].to_string(),
              std::string_view(static_cast<const char*>(parts[1].data()), parts[1].size()));
        }
      }
      core_->Tick();
      const auto now = clock_->Now();
      // Without a store nothing is written: acknowledgements go out at once.
      if (!store_ || now >= next_commit) {
        batch = core_->TakeCommit(/*records=*/store_ != nullptr);
        next_commit = now + kCommitInterval;
      }
      changed_.notify_all();
    }
    if (batch && !batch->empty()) Commit(std::move(*batch));
    {
      MutexLock lock(mu_);
      outbox.swap(transport_->outbox);
      published.swap(transport_->published);
    }
    for (auto& [topic, frame] : published) {
      sockets_->publisher.send(zmq::buffer(topic),
                               zmq::send_flags::sndmore | zmq::send_flags::dontwait);
      sockets_->publisher.send(zmq::buffer(frame), zmq::send_flags::dontwait);
    }
    published.clear();
    for (auto& [route, frame] : outbox) {
      // ROUTER drops frames to unknown routes silently; nothing blocks.
      router.send(zmq::buffer(route), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
      router.send(zmq::buffer(frame), zmq::send_flags::dontwait);
    }
    outbox.clear();
  }
  // What is merged is written before the broker goes, so that a restart finds it.
  std::optional<CommitBatch> last;
  {
    MutexLock lock(mu_);
    if (core_ && store_) last = core_->TakeCommit();
  }
  if (last && store_ && !last->runs.empty()) store_->Save(last->runs).IgnoreError();
}

}  // namespace loads::controller
