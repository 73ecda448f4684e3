#include "loads/common/protocol.h"

#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <msgpack.hpp>

namespace loads::common {
namespace {

// A decoder's verdict, with its reason in *error, as the assertions print it.
bool Ok(const Status& status, std::string* error) {
  *error = status.message();
  return status.ok();
}

Assignment UrlAssignment() {
  Assignment a;
  a.run_id = "run-1";
  a.test = "http://127.0.0.1:8080/";
  a.url = a.test;
  a.users = {3, 2};
  a.hits = {4};
  a.threads = 2;
  return a;
}

TEST(Protocol, ControlMessagesRoundTrip) {
  ControlMessage assign;
  assign.type = MessageType::kAssign;
  assign.run_id = "run-1";
  assign.assignment = UrlAssignment();
  assign.assignment->library = std::string(
      "\x7f"
      "ELF\0\1",
      6);
  assign.assignment->url.clear();
  assign.assignment->test = "example.TestWebSite.test_es";
  ControlMessage out;
  std::string error;
  ASSERT_TRUE(Ok(DecodeControl(EncodeControl(assign), &out), &error)) << error;
  EXPECT_EQ(out.type, MessageType::kAssign);
  ASSERT_TRUE(out.assignment);
  EXPECT_EQ(out.assignment->run_id, "run-1");
  EXPECT_EQ(out.assignment->library, assign.assignment->library);
  EXPECT_EQ(out.assignment->users, (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(out.assignment->hits, (std::vector<int64_t>{4}));

  ControlMessage done;
  done.type = MessageType::kDone;
  done.worker_id = "w";
  done.run_id = "r";
  done.ok = false;
  done.message = "boom";
  ASSERT_TRUE(Ok(DecodeControl(EncodeControl(done), &out), &error)) << error;
  EXPECT_FALSE(out.ok);
  EXPECT_EQ(out.message, "boom");
  MessageType type;
  ControlMessage control;
  Snapshot snapshot;
  ASSERT_TRUE(Ok(DecodeMessage(EncodeControl(done), &type, &control, &snapshot), &error)) << error;
  EXPECT_EQ(type, MessageType::kDone);
  EXPECT_EQ(control.message, "boom");
  snapshot.run_id = "r";
  snapshot.worker_id = "w";
  snapshot.sequence = 3;
  ASSERT_TRUE(Ok(DecodeMessage(EncodeSnapshot(snapshot), &type, &control, &snapshot), &error))
      << error;
  EXPECT_EQ(type, MessageType::kSnapshot);
  EXPECT_EQ(snapshot.sequence, 3u);
}

std::string Pack(const std::map<std::string, msgpack::type::variant>& map) {
  msgpack::sbuffer buffer;
  msgpack::pack(buffer, map);
  return std::string(buffer.data(), buffer.size());
}

TEST(Protocol, InvalidAssignmentsNameTheField) {
  auto assign_with = [](Assignment a) {
    ControlMessage m;
    m.type = MessageType::kAssign;
    m.run_id = "r";
    m.assignment = std::move(a);
    return EncodeControl(m);
  };
  struct Case {
    Assignment assignment;
    std::string expected;
  };
  std::vector<Case> cases;
  Assignment a = UrlAssignment();
  a.users = {};
  cases.push_back({a, "assignment.users"});
  a = UrlAssignment();
  a.users = {-1};
  cases.push_back({a, "values must not be negative"});
  a = UrlAssignment();
  a.hits = {0};
  cases.push_back({a, "values must be positive"});
  a = UrlAssignment();
  a.duration = 5;  // and hits too
  cases.push_back({a, "either hits or duration"});
  a = UrlAssignment();
  a.url.clear();
  cases.push_back({a, "give one of url"});
  a = UrlAssignment();
  a.threads = 0;
  cases.push_back({a, "assignment.threads"});
  for (const auto& c : cases) {
    ControlMessage out;
    std::string error;
    EXPECT_FALSE(Ok(DecodeControl(assign_with(c.assignment), &out), &error));
    EXPECT_NE(error.find(c.expected), std::string::npos) << error;
  }
  ControlMessage out;
  std::string error;
  EXPECT_FALSE(Ok(DecodeControl(Pack({{"v", 2}, {"type", "start"}}), &out), &error));
  EXPECT_NE(error.find("field 'run'"), std::string::npos) << error;
  EXPECT_FALSE(Ok(DecodeControl(Pack({{"v", 2}, {"type", "launch"}}), &out), &error));
  EXPECT_NE(error.find("unknown message type 'launch'"), std::string::npos) << error;
  EXPECT_FALSE(Ok(DecodeControl(Pack({{"v", 1}, {"type", "stop"}}), &out), &error));
  EXPECT_NE(error.find("unsupported version 1"), std::string::npos) << error;
  // What a worker says is bounded: threads, SDK, ids.
  EXPECT_FALSE(Ok(
      DecodeControl(
          Pack({{"v", 2}, {"type", "hello"}, {"worker", "w"}, {"threads", -1}, {"sdk", "0.1.0"}}),
          &out),
      &error));
  EXPECT_NE(error.find("field 'threads'"), std::string::npos) << error;
  EXPECT_FALSE(Ok(
      DecodeControl(
          Pack({{"v", 2}, {"type", "hello"}, {"worker", "w"}, {"threads", 5000}, {"sdk", "0.1.0"}}),
          &out),
      &error));
  EXPECT_FALSE(Ok(
      DecodeControl(
          Pack({{"v", 2}, {"type", "hello"}, {"worker", "w"}, {"threads", 1}, {"sdk", ""}}), &out),
      &error));
  EXPECT_NE(error.find("field 'sdk'"), std::string::npos) << error;
  EXPECT_FALSE(
      Ok(DecodeControl(Pack({{"v", 2}, {"type", "ready"}, {"worker", "w"}, {"run", "a\nb"}}), &out),
         &error));
  EXPECT_NE(error.find("field 'run'"), std::string::npos) << error;
}

// The control messages' exact bytes (tests/testdata/control_v2.hex, also re-encoded by
// tests/integration/test_wire_format.py from the structures the document gives).
TEST(Protocol, GoldenControlBytes) {
  std::ifstream file(std::string(LOADS_TESTDATA_DIR) + "/control_v2.hex");
  ASSERT_TRUE(file);
  std::map<std::string, std::string> golden;
  for (std::string line; std::getline(file, line);) {
    if (line.empty() || line[0] == '#') continue;
    golden[line.substr(0, line.find(' '))] = line.substr(line.find(' ') + 1);
  }
  const auto hex = [](const std::string& bytes) {
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string out;
    for (unsigned char c : bytes) {
      out += kDigits[c >> 4];
      out += kDigits[c & 15];
    }
    return out;
  };
  const auto message = [](MessageType type) {
    ControlMessage m;
    m.type = type;
    m.worker_id = "w";
    m.run_id = "r";
    return m;
  };
  ControlMessage hello = message(MessageType::kHello);
  hello.token = "t";
  hello.threads = 2;
  hello.sdk_version = "0.1.0";
  ControlMessage welcome = message(MessageType::kWelcome);
  ControlMessage ack = message(MessageType::kAck);
  ack.seq = 3;
  ack.closed = true;
  ControlMessage done = message(MessageType::kDone);
  done.seq = 3;
  ControlMessage refused = message(MessageType::kRefused);
  refused.message = "wrong token";
  const std::map<std::string, ControlMessage> messages = {{"hello", hello},
                                                          {"welcome", welcome},
                                                          {"ack", ack},
                                                          {"done", done},
                                                          {"rejoin", message(MessageType::kRejoin)},
                                                          {"refused", refused},
                                                          {"bye", message(MessageType::kBye)}};
  ASSERT_EQ(golden.size(), messages.size());
  for (const auto& [name, m] : messages) {
    const std::string bytes = EncodeControl(m);
    EXPECT_EQ(hex(bytes), golden.at(name)) << name;
    ControlMessage back;
    std::string error;
    EXPECT_TRUE(Ok(DecodeControl(bytes, &back), &error)) << name << ": " << error;
    EXPECT_EQ(back.type, m.type);
  }
}

}  // namespace
}  // namespace loads::common
