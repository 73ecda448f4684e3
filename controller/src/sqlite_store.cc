// The controller's state in SQLite: one row per run, its merged statistics as a snapshot
// (docs/wire-protocol.md) and everything else as a JSON document. WAL mode with synchronous=NORMAL:
// a commit survives the controller being killed (the data is in the kernel's page cache), and
// costs no fsync of its own.

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "loads/common/snapshot.h"
#include "loads/controller/state_store.h"

namespace loads::controller {
namespace {

using Json = nlohmann::json;

constexpr int kSchemaVersion = 1;

int64_t Nanos(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

Json MemberToJson(const RunMember& m) {
  return Json{{"merged_seq", m.merged_seq},
              {"planned_executions", m.planned_executions},
              {"executions", m.executions},
              {"ready", m.ready},
              {"done", m.done},
              {"ok", m.ok},
              {"left", m.left},
              {"done_seq", m.done_seq},
              {"message", m.message},
              {"lost", m.lost},
              {"lost_why", m.lost_why}};
}

RunMember MemberFromJson(const Json& j) {
  RunMember m;
  m.merged_seq = j.at("merged_seq").get<uint64_t>();
  m.planned_executions = j.at("planned_executions").get<uint64_t>();
  m.executions = j.at("executions").get<uint64_t>();
  m.ready = j.at("ready").get<bool>();
  m.done = j.at("done").get<bool>();
  m.ok = j.at("ok").get<bool>();
  m.left = j.at("left").get<bool>();
  m.done_seq = j.at("done_seq").get<uint64_t>();
  m.message = j.at("message").get<std::string>();
  m.lost = j.at("lost").get<bool>();
  m.lost_why = j.at("lost_why").get<std::string>();
  return m;
}

// The series as columns; a point without a response has null percentiles.
Json SeriesToJson(const common::SeriesBuilder::Saved& saved) {
  const common::Series& c = saved.closed;
  const auto optional = [](const std::vector<std::optional<double>>& column) {
    Json out = Json::array();
    for (const auto& v : column) out.push_back(v ? Json(*v) : Json(nullptr));
    return out;
  };
  return Json{{"step", c.step_seconds},
              {"seconds", c.seconds},
              {"hits", c.hits},
              {"hit_errors", c.hit_errors},
              {"executions", c.executions},
              {"errors", c.errors},
              {"failures", c.failures},
              {"active_users", c.active_users},
              {"p50", optional(c.p50)},
              {"p90", optional(c.p90)},
              {"p99", optional(c.p99)},
              {"open", saved.open},
              {"open_counts",
               {saved.hits, saved.hit_errors, saved.executions, saved.errors, saved.failures}},
              {"open_users", saved.active_users}};
}

common::SeriesBuilder::Saved SeriesFromJson(const Json& j) {
  common::SeriesBuilder::Saved saved;
  common::Series& c = saved.closed;
  const auto optional = [](const Json& column) {
    std::vector<std::optional<double>> out;
    for (const auto& v : column) {
      out.push_back(v.is_null() ? std::nullopt : std::optional<double>(v.get<double>()));
    }
    return out;
  };
  c.step_seconds = j.at("step").get<double>();
  c.seconds = j.at("seconds").get<std::vector<double>>();
  c.hits = j.at("hits").get<std::vector<uint64_t>>();
  c.hit_errors = j.at("hit_errors").get<std::vector<uint64_t>>();
  c.executions = j.at("executions").get<std::vector<uint64_t>>();
  c.errors = j.at("errors").get<std::vector<uint64_t>>();
  c.failures = j.at("failures").get<std::vector<uint64_t>>();
  c.active_users = j.at("active_users").get<std::vector<int64_t>>();
  c.p50 = optional(j.at("p50"));
  c.p90 = optional(j.at("p90"));
  c.p99 = optional(j.at("p99"));
  const size_t n = c.seconds.size();
  for (size_t size :
       {c.hits.size(), c.hit_errors.size(), c.executions.size(), c.errors.size(), c.failures.size(),
        c.active_users.size(), c.p50.size(), c.p90.size(), c.p99.size()}) {
    if (size != n) throw std::runtime_error("series columns of different lengths");
  }
  saved.open = j.at("open").get<int64_t>();
  const auto counts = j.at("open_counts").get<std::vector<uint64_t>>();
  if (counts.size() != 5) throw std::runtime_error("series: open_counts needs 5 counts");
  saved.hits = counts[0];
  saved.hit_errors = counts[1];
  saved.executions = counts[2];
  saved.errors = counts[3];
  saved.failures = counts[4];
  saved.active_users = j.at("open_users").get<int64_t>();
  return saved;
}

Json RecordToJson(const RunRecord& r) {
  const RunView& v = r.view;
  Json members = Json::object();
  for (const auto& [id, m] : r.members) members[id] = MemberToJson(m);
  Json j{{"test", v.test},
         {"planned_users", v.planned_users},
         {"spec", Json::binary(std::vector<uint8_t>(v.spec.begin(), v.spec.end()))},
         {"library_digest", v.library_digest},
         {"workers", v.workers},
         {"lost_workers", v.lost_workers},
         {"left_workers", v.left_workers},
         {"degraded", v.degraded},
         {"error", v.error},
         {"snapshots", v.snapshots},
         {"duplicates", v.duplicates},
         {"late_snapshots", v.late_snapshots},
         {"restarts", v.restarts},
         {"policy", r.policy == LossPolicy::kFail ? "fail" : "continue"},
         {"stop_requested", r.stop_requested},
         {"waiting", r.waiting},
         {"members", members}};
  if (v.missing_executions) j["missing_executions"] = *v.missing_executions;
  j["load_start_ns"] = Nanos(v.load_start);
  j["aborted_by"] = v.aborted_by;
  j["aborted_at"] = v.aborted_at;
  j["series"] = SeriesToJson(v.series.Save());
  return j;
}

// The spec is binary (a serialized RunSpec): CBOR keeps it as bytes where JSON text could not.
std::vector<uint8_t> EncodeRecord(const RunRecord& r) { return Json::to_cbor(RecordToJson(r)); }

void DecodeRecord(const std::vector<uint8_t>& cbor, RunRecord* r) {
  const Json j = Json::from_cbor(cbor);
  RunView& v = r->view;
  v.test = j.at("test").get<std::string>();
  v.planned_users = j.at("planned_users").get<int64_t>();
  const auto& spec = j.at("spec").get_binary();
  v.spec.assign(spec.begin(), spec.end());
  v.library_digest = j.at("library_digest").get<std::string>();
  v.workers = j.at("workers").get<std::vector<std::string>>();
  v.lost_workers = j.at("lost_workers").get<std::vector<std::string>>();
  v.left_workers = j.at("left_workers").get<std::vector<std::string>>();
  v.degraded = j.at("degraded").get<bool>();
  v.error = j.at("error").get<std::string>();
  v.snapshots = j.at("snapshots").get<uint64_t>();
  v.duplicates = j.at("duplicates").get<uint64_t>();
  v.late_snapshots = j.at("late_snapshots").get<uint64_t>();
  v.restarts = j.at("restarts").get<uint32_t>();
  if (j.contains("missing_executions")) {
    v.missing_executions = j.at("missing_executions").get<uint64_t>();
  }
  // Absent in records of controllers before the series (the same schema version): no series.
  if (j.contains("load_start_ns")) {
    v.load_start = common::FromUnixNanos(j.at("load_start_ns").get<int64_t>());
    v.aborted_by = j.at("aborted_by").get<std::string>();
    v.aborted_at = j.at("aborted_at").get<double>();
    v.series.Restore(SeriesFromJson(j.at("series")));
  }
  r->policy =
      j.at("policy").get<std::string>() == "fail" ? LossPolicy::kFail : LossPolicy::kContinue;
  r->stop_requested = j.at("stop_requested").get<bool>();
  r->waiting = j.at("waiting").get<bool>();
  for (const auto& [id, m] : j.at("members").items()) r->members[id] = MemberFromJson(m);
}

class SqliteStore : public StateStore {
 public:
  SqliteStore(std::string dir, int lock_fd, sqlite3* db)
      : dir_(std::move(dir)), lock_fd_(lock_fd), db_(db) {}
  ~SqliteStore() override {
    sqlite3_finalize(upsert_);
    sqlite3_finalize(remove_);
    sqlite3_close(db_);
    close(lock_fd_);
  }

  Status Prepare() {
    const char* schema =
        "PRAGMA journal_mode=WAL;"
        "PRAGMA synchronous=NORMAL;"
        "CREATE TABLE IF NOT EXISTS runs ("
        "  id TEXT PRIMARY KEY,"
        "  state TEXT NOT NULL,"
        "  started_ns INTEGER NOT NULL,"
        "  ended_ns INTEGER NOT NULL,"
        "  record BLOB NOT NULL,"  // CBOR: everything but the statistics and the report
        "  stats BLOB NOT NULL,"   // a msgpack snapshot of the merged results
        "  report TEXT NOT NULL"   // the final JSON report, once over
        ");";
    if (Status s = Exec(schema); !s.ok()) return s;
    int version = 0;
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db_, "PRAGMA user_version", -1, &stmt, nullptr) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW) {
      version = sqlite3_column_int(stmt, 0);
    }
    sqlite3_finalize(stmt);
    if (version == 0) {
      if (Status s = Exec("PRAGMA user_version=" + std::to_string(kSchemaVersion)); !s.ok()) {
        return s;
      }
    } else if (version != kSchemaVersion) {
      return FailedPreconditionError(Describe() + " holds state of schema version " +
                                     std::to_string(version) + "; this controller reads " +
                                     std::to_string(kSchemaVersion));
    }
    if (sqlite3_prepare_v2(db_,
                           "INSERT OR REPLACE INTO runs (id, state, started_ns, ended_ns, record, "
                           "stats, report) VALUES (?, ?, ?, ?, ?, ?, ?)",
                           -1, &upsert_, nullptr) != SQLITE_OK ||
        sqlite3_prepare_v2(db_, "DELETE FROM runs WHERE id = ?", -1, &remove_, nullptr) !=
            SQLITE_OK) {
      return Error("preparing statements");
    }
    return OkStatus();
  }

  StatusOr<std::vector<RunRecord>> Load() override {
    std::vector<RunRecord> out;
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(
            db_, "SELECT id, state, started_ns, ended_ns, record, stats, report FROM runs", -1,
            &stmt, nullptr) != SQLITE_OK) {
      return Error("reading runs");
    }
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
      RunRecord record;
      RunView& v = record.view;
      v.run_id = Text(stmt, 0);
      const auto state = RunStateFromName(Text(stmt, 1));
      try {
        if (!state) throw std::runtime_error("unknown state " + Text(stmt, 1));
        v.state = *state;
        v.started = common::FromUnixNanos(sqlite3_column_int64(stmt, 2));
        v.ended = common::FromUnixNanos(sqlite3_column_int64(stmt, 3));
        const std::string cbor = Blob(stmt, 4);
        DecodeRecord(std::vector<uint8_t>(cbor.begin(), cbor.end()), &record);
        common::Snapshot stats;
        if (Status read = common::DecodeSnapshot(Blob(stmt, 5), &stats); !read.ok()) {
          throw std::runtime_error("statistics: " + read.message());
        }
        v.stats = std::move(stats.stats);
        v.report_json = Text(stmt, 6);
      } catch (const std::exception& e) {
        // One unreadable run does not take the others with it; it is left in the database.
        std::fprintf(stderr, "loads-controller: skipping run %s of %s: %s\n", v.run_id.c_str(),
                     Describe().c_str(), e.what());
        continue;
      }
      out.push_back(std::move(record));
    }
    sqlite3_finalize(stmt);
    if (rc != SQLITE_DONE) return Error("reading runs");
    return out;
  }

  Status Save(const std::vector<RunRecord>& runs) override {
    if (runs.empty()) return OkStatus();
    if (Status s = Exec("BEGIN"); !s.ok()) return s;
    for (const RunRecord& r : runs) {
      const RunView& v = r.view;
      common::Snapshot merged;
      merged.run_id = v.run_id;
      merged.worker_id = "controller";
      merged.sequence = 1;
      merged.stats = v.stats;
      const std::string stats = common::EncodeSnapshot(merged);
      const std::vector<uint8_t> record = EncodeRecord(r);
      const std::string state(RunStateName(v.state));
      sqlite3_reset(upsert_);
      sqlite3_bind_text(upsert_, 1, v.run_id.data(), static_cast<int>(v.run_id.size()),
                        SQLITE_TRANSIENT);
      sqlite3_bind_text(upsert_, 2, state.data(), static_cast<int>(state.size()), SQLITE_TRANSIENT);
      sqlite3_bind_int64(upsert_, 3, Nanos(v.started));
      sqlite3_bind_int64(upsert_, 4, Nanos(v.ended));
      sqlite3_bind_blob(upsert_, 5, record.data(), static_cast<int>(record.size()),
                        SQLITE_TRANSIENT);
      sqlite3_bind_blob(upsert_, 6, stats.data(), static_cast<int>(stats.size()), SQLITE_TRANSIENT);
      sqlite3_bind_text(upsert_, 7, v.report_json.data(), static_cast<int>(v.report_json.size()),
                        SQLITE_TRANSIENT);
      if (sqlite3_step(upsert_) != SQLITE_DONE) {
        Status error = Error("writing run " + v.run_id);
        Exec("ROLLBACK").IgnoreError();
        return error;
      }
    }
    return Exec("COMMIT");
  }

  Status Delete(const std::vector<std::string>& run_ids) override {
    if (Status s = Exec("BEGIN"); !s.ok()) return s;
    for (const auto& id : run_ids) {
      sqlite3_reset(remove_);
      sqlite3_bind_text(remove_, 1, id.data(), static_cast<int>(id.size()), SQLITE_TRANSIENT);
      if (sqlite3_step(remove_) != SQLITE_DONE) {
        Status error = Error("deleting run " + id);
        Exec("ROLLBACK").IgnoreError();
        return error;
      }
    }
    return Exec("COMMIT");
  }

  std::string Describe() const override { return dir_ + "/state.db"; }

 private:
  Status Exec(const std::string& sql) {
    char* message = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &message) != SQLITE_OK) {
      std::string text = message ? message : "unknown error";
      sqlite3_free(message);
      return UnavailableError(Describe() + ": " + text);
    }
    return OkStatus();
  }
  Status Error(const std::string& what) {
    return UnavailableError(Describe() + ": " + what + ": " + sqlite3_errmsg(db_));
  }
  static std::string Text(sqlite3_stmt* stmt, int column) {
    const auto* text = sqlite3_column_text(stmt, column);
    return text ? std::string(reinterpret_cast<const char*>(text),
                              static_cast<size_t>(sqlite3_column_bytes(stmt, column)))
                : std::string();
  }
  static std::string Blob(sqlite3_stmt* stmt, int column) {
    const void* data = sqlite3_column_blob(stmt, column);
    return data ? std::string(static_cast<const char*>(data),
                              static_cast<size_t>(sqlite3_column_bytes(stmt, column)))
                : std::string();
  }

  std::string dir_;
  int lock_fd_;
  sqlite3* db_;
  sqlite3_stmt* upsert_ = nullptr;
  sqlite3_stmt* remove_ = nullptr;
};

// mkdir -p, 0700: the state holds test specs and tokens' effects, for this user only.
Status MakeDirs(const std::string& dir) {
  for (size_t at = 1; at <= dir.size(); ++at) {
    if (at != dir.size() && dir[at] != '/') continue;
    const std::string part = dir.substr(0, at);
    if (mkdir(part.c_str(), 0700) != 0 && errno != EEXIST) {
      return UnavailableError("cannot create " + part + ": " + std::strerror(errno));
    }
  }
  return OkStatus();
}

}  // namespace

std::string DefaultStateDir() {
  if (const char* data = std::getenv("XDG_DATA_HOME"); data && *data) {
    return std::string(data) + "/loads/controller";
  }
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : "/tmp") + "/.local/share/loads/controller";
}

StatusOr<std::unique_ptr<StateStore>> OpenSqliteStore(const std::string& dir) {
  if (Status s = MakeDirs(dir); !s.ok()) return s;
  const std::string lock_path = dir + "/lock";
  const int fd = open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return UnavailableError("cannot open " + lock_path + ": " + std::strerror(errno));
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    char pid[32] = {0};
    const ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
    close(fd);
    return FailedPreconditionError("the state folder " + dir +
                                   " is in use by another loads-controller" +
                                   (n > 0 ? " (pid " + std::string(pid, n) + ")" : "") +
                                   "; give this one its own --state-dir");
  }
  const std::string pid = std::to_string(getpid());
  if (ftruncate(fd, 0) != 0 || pwrite(fd, pid.data(), pid.size(), 0) < 0) {
    // The pid is only for the message above.
  }
  sqlite3* db = nullptr;
  const std::string path = dir + "/state.db";
  if (sqlite3_open_v2(path.c_str(), &db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                      nullptr) != SQLITE_OK) {
    std::string why = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    close(fd);
    return UnavailableError("cannot open " + path + ": " + why);
  }
  sqlite3_busy_timeout(db, 5000);
  auto store = std::make_unique<SqliteStore>(dir, fd, db);
  if (Status s = store->Prepare(); !s.ok()) return s;
  return std::unique_ptr<StateStore>(std::move(store));
}

}  // namespace loads::controller
