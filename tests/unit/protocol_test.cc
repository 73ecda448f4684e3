#include "loads/common/protocol.h"

#include <gtest/gtest.h>

#include <msgpack.hpp>

namespace loads::common {
namespace {

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
  ASSERT_TRUE(DecodeControl(EncodeControl(assign), &out, &error)) << error;
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
  ASSERT_TRUE(DecodeControl(EncodeControl(done), &out, &error)) << error;
  EXPECT_FALSE(out.ok);
  EXPECT_EQ(out.message, "boom");
  MessageType type;
  ControlMessage control;
  Snapshot snapshot;
  ASSERT_TRUE(DecodeMessage(EncodeControl(done), &type, &control, &snapshot, &error)) << error;
  EXPECT_EQ(type, MessageType::kDone);
  EXPECT_EQ(control.message, "boom");
  snapshot.run_id = "r";
  snapshot.worker_id = "w";
  snapshot.sequence = 3;
  ASSERT_TRUE(DecodeMessage(EncodeSnapshot(snapshot), &type, &control, &snapshot, &error)) << error;
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
    EXPECT_FALSE(DecodeControl(assign_with(c.assignment), &out, &error));
    EXPECT_NE(error.find(c.expected), std::string::npos) << error;
  }
  ControlMessage out;
  std::string error;
  EXPECT_FALSE(DecodeControl(Pack({{"v", 2}, {"type", "start"}}), &out, &error));
  EXPECT_NE(error.find("field 'run'"), std::string::npos) << error;
  EXPECT_FALSE(DecodeControl(Pack({{"v", 2}, {"type", "launch"}}), &out, &error));
  EXPECT_NE(error.find("unknown message type 'launch'"), std::string::npos) << error;
  EXPECT_FALSE(DecodeControl(Pack({{"v", 1}, {"type", "stop"}}), &out, &error));
  EXPECT_NE(error.find("unsupported version 1"), std::string::npos) << error;
  // What a worker says is bounded: threads, SDK, ids.
  EXPECT_FALSE(DecodeControl(
      Pack({{"v", 2}, {"type", "hello"}, {"worker", "w"}, {"threads", -1}, {"sdk", "0.1.0"}}), &out,
      &error));
  EXPECT_NE(error.find("field 'threads'"), std::string::npos) << error;
  EXPECT_FALSE(DecodeControl(
      Pack({{"v", 2}, {"type", "hello"}, {"worker", "w"}, {"threads", 5000}, {"sdk", "0.1.0"}}),
      &out, &error));
  EXPECT_FALSE(DecodeControl(
      Pack({{"v", 2}, {"type", "hello"}, {"worker", "w"}, {"threads", 1}, {"sdk", ""}}), &out,
      &error));
  EXPECT_NE(error.find("field 'sdk'"), std::string::npos) << error;
  EXPECT_FALSE(DecodeControl(Pack({{"v", 2}, {"type", "ready"}, {"worker", "w"}, {"run", "a\nb"}}),
                             &out, &error));
  EXPECT_NE(error.find("field 'run'"), std::string::npos) << error;
}

}  // namespace
}  // namespace loads::common
