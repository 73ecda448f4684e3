#include "loads/common/protocol.h"

#include <cmath>
#include <functional>

#include "common/src/msgpack_reader.h"
#include "loads/common/target_allow.h"

namespace loads::common {
namespace {

using Packer = msgpack::packer<msgpack::sbuffer>;

constexpr std::pair<MessageType, std::string_view> kNames[] = {
    {MessageType::kHello, "hello"},
    {MessageType::kWelcome, "welcome"},
    {MessageType::kHeartbeat, "heartbeat"},
    {MessageType::kAssign, "assign"},
    {MessageType::kReady, "ready"},
    {MessageType::kStart, "start"},
    {MessageType::kStop, "stop"},
    {MessageType::kDone, "done"},
    {MessageType::kSnapshot, "snapshot"},
    {MessageType::kAck, "ack"},
    {MessageType::kRejoin, "rejoin"},
    {MessageType::kRefused, "refused"},
    {MessageType::kBye, "bye"},
};

bool TypeFromName(std::string_view name, MessageType* type) {
  for (const auto& [t, n] : kNames) {
    if (n == name) {
      *type = t;
      return true;
    }
  }
  return false;
}

void PackCycles(Packer& pk, const std::vector<int64_t>& values) {
  pk.pack_array(static_cast<uint32_t>(values.size()));
  for (int64_t v : values) pk.pack(v);
}

// Users cycles may hold zeros (a worker's share of a small cycle); hits cycles may not.
bool ReadCycles(Reader& r, const msgpack::object& o, std::string_view field, bool allow_empty,
                int64_t min_value, std::vector<int64_t>* out) {
  if (!r.Array(o, field, SIZE_MAX)) return false;
  if (o.via.array.size == 0 && !allow_empty) return r.Fail(field, "expected at least one value");
  if (o.via.array.size > 1000) return r.Fail(field, "more than 1000 cycles");
  out->clear();
  for (uint32_t i = 0; i < o.via.array.size; ++i) {
    int64_t v = 0;
    if (!r.Int(o.via.array.ptr[i], field, &v)) return false;
    if (v < min_value) {
      return r.Fail(field,
                    min_value == 0 ? "values must not be negative" : "values must be positive");
    }
    out->push_back(v);
  }
  return true;
}

void PackStages(Packer& pk, const std::vector<Stage>& stages) {
  pk.pack_array(static_cast<uint32_t>(stages.size()));
  for (const Stage& stage : stages) {
    pk.pack_array(2);
    pk.pack_double(stage.seconds);
    pk.pack_double(stage.target);
  }
}

void PackOptional(Packer& pk, const std::optional<double>& value) {
  if (value) {
    pk.pack_double(*value);
  } else {
    pk.pack_nil();
  }
}

bool ReadNumber(Reader& r, const msgpack::object& v, std::string_view field, double* out) {
  if (v.type == msgpack::type::FLOAT64 || v.type == msgpack::type::FLOAT32) {
    *out = v.via.f64;
  } else if (v.type == msgpack::type::POSITIVE_INTEGER) {
    *out = static_cast<double>(v.via.u64);
  } else {
    return r.Fail(field, "expected a number");
  }
  if (!std::isfinite(*out) || *out < 0) return r.Fail(field, "expected a number >= 0");
  return true;
}

bool ReadOptional(Reader& r, const msgpack::object& v, std::string_view field,
                  std::optional<double>* out) {
  if (v.type == msgpack::type::NIL) {
    out->reset();
    return true;
  }
  double value = 0;
  if (!ReadNumber(r, v, field, &value)) return false;
  *out = value;
  return true;
}

bool ReadStages(Reader& r, const msgpack::object& v, std::string_view field,
                std::vector<Stage>* out) {
  if (!r.Array(v, field, SIZE_MAX)) return false;
  if (v.via.array.size > 1000) return r.Fail(field, "more than 1000 stages");
  out->clear();
  for (uint32_t i = 0; i < v.via.array.size; ++i) {
    const msgpack::object& item = v.via.array.ptr[i];
    Stage stage;
    if (!r.Array(item, field, 2) || !ReadNumber(r, item.via.array.ptr[0], field, &stage.seconds) ||
        !ReadNumber(r, item.via.array.ptr[1], field, &stage.target)) {
      return false;
    }
    if (stage.seconds <= 0) return r.Fail(field, "a stage lasts more than 0 seconds");
    out->push_back(stage);
  }
  return true;
}

bool ReadLoad(Reader& r, const msgpack::object& o, LoadModel* load) {
  if (!r.Map(o, "assignment.load", 16)) return false;
  for (uint32_t i = 0; i < o.via.map.size; ++i) {
    std::string key;
    if (!r.String(o.via.map.ptr[i].key, "assignment.load", &key)) return false;
    const msgpack::object& v = o.via.map.ptr[i].val;
    const std::string field = "assignment.load." + key;
    bool ok = true;
    if (key == "stages") {
      ok = ReadStages(r, v, field, &load->stages);
    } else if (key == "rate") {
      ok = ReadOptional(r, v, field, &load->rate);
    } else if (key == "rate_stages") {
      ok = ReadStages(r, v, field, &load->rate_stages);
    } else if (key == "max_users") {
      ok = r.Int(v, field, &load->max_users);
      if (ok && (load->max_users < 0 || load->max_users > 10'000'000)) {
        return r.Fail(field, "expected 0..10000000");
      }
    } else if (key == "arrivals") {
      std::string arrivals;
      ok = r.String(v, field, &arrivals);
      if (ok && arrivals != "constant" && arrivals != "poisson") {
        return r.Fail(field, "expected constant or poisson");
      }
      load->poisson = arrivals == "poisson";
    } else if (key == "pause") {
      if (v.type == msgpack::type::NIL) {
        load->pause_min.reset();
        load->pause_max.reset();
      } else {
        double low = 0, high = 0;
        if (!r.Array(v, field, 2) || !ReadNumber(r, v.via.array.ptr[0], field, &low) ||
            !ReadNumber(r, v.via.array.ptr[1], field, &high)) {
          return false;
        }
        if (high < low) return r.Fail(field, "[min, max] with min <= max");
        load->pause_min = low;
        load->pause_max = high;
      }
    } else if (key == "pacing") {
      ok = ReadOptional(r, v, field, &load->pacing);
    } else if (key == "share") {
      if (!r.Array(v, field, 2) || !r.Int(v.via.array.ptr[0], field, &load->share_offset) ||
          !r.Int(v.via.array.ptr[1], field, &load->share_stride)) {
        return false;
      }
      if (load->share_stride < 1 || load->share_stride > 100'000 || load->share_offset < 0 ||
          load->share_offset >= load->share_stride) {
        return r.Fail(field, "expected [offset, stride] with 0 <= offset < stride");
      }
    } else {
      return r.Fail(field, "unknown field");
    }
    if (!ok) return false;
  }
  if (load->open() && load->ramped()) return r.Fail("assignment.load", "stages with a rate");
  return true;
}

bool ReadAssignment(Reader& r, const msgpack::object& o, Assignment* a) {
  if (!r.Map(o, "assignment", 32)) return false;
  bool seen_users = false;
  for (uint32_t i = 0; i < o.via.map.size; ++i) {
    std::string key;
    if (!r.String(o.via.map.ptr[i].key, "assignment", &key)) return false;
    const msgpack::object& v = o.via.map.ptr[i].val;
    const std::string field = "assignment." + key;
    bool ok = true;
    if (key == "test") {
      ok = r.String(v, field, &a->test);
    } else if (key == "url") {
      ok = r.String(v, field, &a->url);
    } else if (key == "scenario") {
      ok = r.String(v, field, &a->scenario);
    } else if (key == "external_command") {
      ok = r.String(v, field, &a->external_command);
    } else if (key == "library") {
      if (v.type != msgpack::type::BIN) return r.Fail(field, "expected bin (the library's bytes)");
      a->library.assign(v.via.bin.ptr, v.via.bin.size);
    } else if (key == "users") {
      ok = ReadCycles(r, v, field, true, 0, &a->users);
      seen_users = true;
    } else if (key == "hits") {
      ok = ReadCycles(r, v, field, true, 1, &a->hits);
    } else if (key == "duration") {
      if (v.type == msgpack::type::NIL) {
        a->duration.reset();
      } else if (v.type == msgpack::type::FLOAT64 || v.type == msgpack::type::FLOAT32) {
        if (!std::isfinite(v.via.f64) || v.via.f64 <= 0) return r.Fail(field, "expected > 0");
        a->duration = v.via.f64;
      } else {
        uint64_t seconds = 0;
        if (!r.Uint(v, field, &seconds) || seconds == 0) return r.Fail(field, "expected > 0");
        a->duration = static_cast<double>(seconds);
      }
    } else if (key == "threads") {
      ok = r.Int(v, field, &a->threads);
      if (ok && (a->threads < 1 || a->threads > 1024)) return r.Fail(field, "expected 1..1024");
    } else if (key == "server_url") {
      ok = r.String(v, field, &a->server_url);
    } else if (key == "connect_timeout_ms") {
      ok = r.Int(v, field, &a->connect_timeout_ms);
      if (ok && a->connect_timeout_ms < 1) return r.Fail(field, "expected >= 1");
    } else if (key == "timeout_ms") {
      ok = r.Int(v, field, &a->timeout_ms);
      if (ok && a->timeout_ms < 1) return r.Fail(field, "expected >= 1");
    } else if (key == "insecure") {
      if (v.type != msgpack::type::BOOLEAN) return r.Fail(field, "expected a boolean");
      a->insecure = v.via.boolean;
    } else if (key == "load") {
      ok = ReadLoad(r, v, &a->load);
    } else if (key == "allow_targets") {
      if (!r.Array(v, field, SIZE_MAX)) return false;
      if (v.via.array.size > TargetAllowList::kMaxPatterns) {
        return r.Fail(field,
                      "at most " + std::to_string(TargetAllowList::kMaxPatterns) + " patterns");
      }
      for (uint32_t j = 0; j < v.via.array.size; ++j) {
        std::string pattern;
        if (!r.String(v.via.array.ptr[j], field, &pattern)) return false;
        a->allow_targets.push_back(std::move(pattern));
      }
      if (auto parsed = TargetAllowList::Parse(a->allow_targets); !parsed.ok()) {
        return r.Fail(field, parsed.status().message());
      }
    } else {
      return r.Fail(field, "unknown field");
    }
    if (!ok) return false;
  }
  if (!seen_users) return r.Fail("assignment.users", "missing");
  if (a->users.empty() && !a->load.open() && !a->load.ramped()) {
    return r.Fail("assignment.users", "expected at least one value");
  }
  if (a->load.open() || a->load.ramped()) {
    // Arrivals and ramps set their own length: a rate runs for `duration` (unless its stages
    // give it), stages for theirs; neither counts executions.
    if (!a->hits.empty()) return r.Fail("assignment.hits", "not with a rate or stages");
    if (a->load.open() && a->load.rate_stages.empty() && !a->duration) {
      return r.Fail("assignment.duration", "a rate needs a duration");
    }
  } else if (a->hits.empty() == !a->duration.has_value()) {
    return r.Fail("assignment.hits", "give either hits or duration");
  }
  if (!a->url.empty() + !a->library.empty() + !a->scenario.empty() + !a->external_command.empty() !=
      1) {
    return r.Fail("assignment.url",
                  "give one of url (a GET test), library (a test library), scenario or "
                  "external_command");
  }
  if (a->test.empty()) return r.Fail("assignment.test", "missing");
  return true;
}

}  // namespace

std::string_view MessageTypeName(MessageType type) {
  for (const auto& [t, n] : kNames) {
    if (t == type) return n;
  }
  return "unknown";
}

std::string EncodeControl(const ControlMessage& m) {
  msgpack::sbuffer buffer;
  Packer pk(&buffer);
  std::vector<std::pair<std::string_view, std::function<void()>>> fields;
  auto str = [&](std::string_view key, const std::string& value) {
    fields.emplace_back(key, [&pk, &value] { PackString(pk, value); });
  };
  auto num = [&](std::string_view key, int64_t value) {
    fields.emplace_back(key, [&pk, value] { pk.pack(value); });
  };
  auto unum = [&](std::string_view key, uint64_t value) {
    fields.emplace_back(key, [&pk, value] { pk.pack(value); });
  };
  auto flag = [&](std::string_view key, bool value) {
    fields.emplace_back(key, [&pk, value] { pk.pack(value); });
  };
  switch (m.type) {
    case MessageType::kHello:
      str("worker", m.worker_id);
      str("token", m.token);
      num("threads", m.threads);
      str("sdk", m.sdk_version);
      str("run", m.run_id);
      break;
    case MessageType::kWelcome:
      str("worker", m.worker_id);
      num("heartbeat_ms", m.heartbeat_ms);
      str("run", m.run_id);
      break;
    case MessageType::kHeartbeat:
      str("worker", m.worker_id);
      break;
    case MessageType::kAssign:
      fields.emplace_back("run", [&] { PackString(pk, m.assignment ? m.assignment->run_id : ""); });
      if (m.assignment) {
        fields.emplace_back("assignment", [&] {
          const Assignment& a = *m.assignment;
          pk.pack_map(a.allow_targets.empty() ? 11 : 12);
          if (!a.allow_targets.empty()) {
            PackString(pk, "allow_targets");
            pk.pack_array(static_cast<uint32_t>(a.allow_targets.size()));
            for (const std::string& pattern : a.allow_targets) PackString(pk, pattern);
          }
          PackString(pk, "test");
          PackString(pk, a.test);
          if (!a.library.empty()) {
            PackString(pk, "library");
            pk.pack_bin(static_cast<uint32_t>(a.library.size()));
            pk.pack_bin_body(a.library.data(), static_cast<uint32_t>(a.library.size()));
          } else if (!a.scenario.empty()) {
            PackString(pk, "scenario");
            PackString(pk, a.scenario);
          } else if (!a.external_command.empty()) {
            PackString(pk, "external_command");
            PackString(pk, a.external_command);
          } else {
            PackString(pk, "url");
            PackString(pk, a.url);
          }
          PackString(pk, "users");
          PackCycles(pk, a.users);
          PackString(pk, "hits");
          PackCycles(pk, a.hits);
          PackString(pk, "duration");
          if (a.duration) {
            pk.pack(*a.duration);
          } else {
            pk.pack_nil();
          }
          PackString(pk, "threads");
          pk.pack(a.threads);
          PackString(pk, "server_url");
          PackString(pk, a.server_url);
          PackString(pk, "connect_timeout_ms");
          pk.pack(a.connect_timeout_ms);
          PackString(pk, "timeout_ms");
          pk.pack(a.timeout_ms);
          PackString(pk, "insecure");
          pk.pack(a.insecure);
          PackString(pk, "load");
          const LoadModel& l = a.load;
          pk.pack_map(8);
          PackString(pk, "stages");
          PackStages(pk, l.stages);
          PackString(pk, "rate");
          PackOptional(pk, l.rate);
          PackString(pk, "rate_stages");
          PackStages(pk, l.rate_stages);
          PackString(pk, "max_users");
          pk.pack(l.max_users);
          PackString(pk, "arrivals");
          PackString(pk, l.poisson ? "poisson" : "constant");
          PackString(pk, "pause");
          if (l.pause_min) {
            pk.pack_array(2);
            pk.pack_double(*l.pause_min);
            pk.pack_double(*l.pause_max);
          } else {
            pk.pack_nil();
          }
          PackString(pk, "pacing");
          PackOptional(pk, l.pacing);
          PackString(pk, "share");
          pk.pack_array(2);
          pk.pack(l.share_offset);
          pk.pack(l.share_stride);
        });
      }
      break;
    case MessageType::kReady:
      str("worker", m.worker_id);
      str("run", m.run_id);
      break;
    case MessageType::kStart:
      str("run", m.run_id);
      fields.emplace_back("at", [&pk, &m] { pk.pack(m.start_at); });
      break;
    case MessageType::kStop:
      str("run", m.run_id);
      break;
    case MessageType::kDone:
      str("worker", m.worker_id);
      str("run", m.run_id);
      flag("ok", m.ok);
      str("message", m.message);
      unum("seq", m.seq);
      flag("left", m.left);
      break;
    case MessageType::kAck:
      str("run", m.run_id);
      unum("seq", m.seq);
      flag("closed", m.closed);
      break;
    case MessageType::kRejoin:
      break;
    case MessageType::kRefused:
      str("message", m.message);
      break;
    case MessageType::kBye:
      str("worker", m.worker_id);
      break;
    case MessageType::kSnapshot:
      break;  // EncodeSnapshot
  }
  pk.pack_map(static_cast<uint32_t>(fields.size() + 2));
  PackString(pk, "v");
  pk.pack(kProtocolVersion);
  PackString(pk, "type");
  PackString(pk, MessageTypeName(m.type));
  for (auto& [key, pack_value] : fields) {
    PackString(pk, key);
    pack_value();
  }
  return std::string(buffer.data(), buffer.size());
}

namespace {
// The "type" of an unpacked message, whatever its kind.
bool TypeOf(const msgpack::object& root, MessageType* type, std::string* error) {
  Reader r(error);
  if (!r.Map(root, "(message)", 64)) return false;
  for (uint32_t i = 0; i < root.via.map.size; ++i) {
    const auto& kv = root.via.map.ptr[i];
    if (kv.key.type == msgpack::type::STR &&
        std::string_view(kv.key.via.str.ptr, kv.key.via.str.size) == "type") {
      std::string name;
      if (!r.String(kv.val, "type", &name)) return false;
      if (!TypeFromName(name, type)) return r.Fail("type", "unknown message type '" + name + "'");
      return true;
    }
  }
  return r.Fail("type", "missing");
}
}  // namespace

Status DecodeMessage(std::string_view bytes, MessageType* type, ControlMessage* control,
                     Snapshot* snapshot) {
  msgpack::object_handle handle;
  std::string error;
  const bool ok =
      UnpackBounded(bytes, &handle, &error) && TypeOf(handle.get(), type, &error) &&
      (*type == MessageType::kSnapshot ? DecodeSnapshotObject(handle.get(), snapshot, &error)
                                       : DecodeControlObject(handle.get(), control, &error));
  return ok ? OkStatus() : InvalidArgumentError(error);
}

std::optional<std::string> AssignmentRunId(std::string_view bytes) {
  msgpack::object_handle handle;
  std::string error;
  if (!UnpackBounded(bytes, &handle, &error)) return std::nullopt;
  const msgpack::object& root = handle.get();
  if (root.type != msgpack::type::MAP) return std::nullopt;
  std::optional<std::string> type, run;
  for (uint32_t i = 0; i < root.via.map.size; ++i) {
    const auto& kv = root.via.map.ptr[i];
    if (kv.key.type != msgpack::type::STR || kv.val.type != msgpack::type::STR) continue;
    const std::string_view key(kv.key.via.str.ptr, kv.key.via.str.size);
    std::string value(kv.val.via.str.ptr, kv.val.via.str.size);
    if (key == "type") type = std::move(value);
    if (key == "run") run = std::move(value);
  }
  if (type != "assign" || !run || run->empty() || run->size() > kMaxIdLength) return std::nullopt;
  return run;
}

Status DecodeControl(std::string_view bytes, ControlMessage* out) {
  *out = ControlMessage{};
  msgpack::object_handle handle;
  std::string error;
  const bool ok =
      UnpackBounded(bytes, &handle, &error) && DecodeControlObject(handle.get(), out, &error);
  return ok ? OkStatus() : InvalidArgumentError(error);
}

bool DecodeControlObject(const msgpack::object& root, ControlMessage* out, std::string* error) {
  Reader r(error);
  *out = ControlMessage{};
  bool seen_type = false;
  const bool read = ReadMessage(
      root, kProtocolVersion, error, [&](const std::string& key, const msgpack::object& v) {
        bool ok = true;
        if (key == "type") {
          std::string name;
          ok = r.String(v, key, &name);
          if (ok && !TypeFromName(name, &out->type)) {
            return r.Fail(key, "unknown message type '" + name + "'");
          }
          if (ok && out->type == MessageType::kSnapshot) {
            return r.Fail(key, "a snapshot, not a control message");
          }
          seen_type = true;
        } else if (key == "worker") {
          ok = r.String(v, key, &out->worker_id);
        } else if (key == "run") {
          ok = r.String(v, key, &out->run_id);
        } else if (key == "token") {
          ok = r.String(v, key, &out->token);
        } else if (key == "threads") {
          ok = r.Int(v, key, &out->threads);
        } else if (key == "sdk") {
          ok = r.String(v, key, &out->sdk_version);
        } else if (key == "heartbeat_ms") {
          ok = r.Int(v, key, &out->heartbeat_ms);
          if (ok && (out->heartbeat_ms < 10 || out->heartbeat_ms > 60'000)) {
            return r.Fail(key, "expected 10..60000");
          }
        } else if (key == "at") {
          ok = r.Uint(v, key, &out->start_at);
        } else if (key == "ok" || key == "left" || key == "closed") {
          if (v.type != msgpack::type::BOOLEAN) return r.Fail(key, "expected a boolean");
          (key == "ok" ? out->ok : key == "left" ? out->left : out->closed) = v.via.boolean;
        } else if (key == "seq") {
          ok = r.Uint(v, key, &out->seq);
        } else if (key == "message") {
          ok = r.String(v, key, &out->message);
        } else if (key == "assignment") {
          out->assignment.emplace();
          ok = ReadAssignment(r, v, &*out->assignment);
        } else {
          return r.Fail(key, "unknown field");
        }
        return ok;
      });
  if (!read) return false;
  if (!seen_type) return r.Fail("type", "missing");
  const MessageType t = out->type;
  const bool needs_run = t == MessageType::kAssign || t == MessageType::kReady ||
                         t == MessageType::kStart || t == MessageType::kStop ||
                         t == MessageType::kDone || t == MessageType::kAck;
  if (needs_run && out->run_id.empty()) return r.Fail("run", "missing or empty");
  // Ids become log lines and metric labels: bounded, printable.
  const auto printable = [](const std::string& s) {
    for (unsigned char c : s) {
      if (c < 0x21 || c == 0x7f) return false;
    }
    return true;
  };
  if (out->run_id.size() > kMaxIdLength || !printable(out->run_id)) {
    return r.Fail("run", "expected at most 200 printable characters without spaces");
  }
  const bool from_worker = t == MessageType::kHello || t == MessageType::kReady ||
                           t == MessageType::kDone || t == MessageType::kBye;
  if (from_worker && (out->worker_id.empty() || out->worker_id.size() > kMaxIdLength ||
                      !printable(out->worker_id))) {
    return r.Fail("worker", "expected 1 to 200 printable characters without spaces");
  }
  if (t == MessageType::kHello) {
    if (out->threads < 1 || out->threads > 1024) return r.Fail("threads", "expected 1..1024");
    if (out->sdk_version.empty() || out->sdk_version.size() > 64) {
      return r.Fail("sdk", "expected a version of 1 to 64 characters");
    }
  }
  if (out->type == MessageType::kAssign) {
    if (!out->assignment) return r.Fail("assignment", "missing");
    out->assignment->run_id = out->run_id;
  }
  return true;
}

}  // namespace loads::common
