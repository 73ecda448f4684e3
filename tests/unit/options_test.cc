// loads-runner's command line, and the run schema it shares with the controller
// (loads/common/run_spec.h): the flags land in the RunSpec fields the table names, and bad input
// of any kind gets one line naming the flag (or, over gRPC, the field).

#include "runner/options.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <set>

#include "loads/common/run_spec.h"

namespace loads::runner {
namespace {

StatusOr<RunnerOptions> Parse(std::vector<std::string> args) { return ParseOptions(args); }

TEST(Options, ParsesTheSeedsCommandLine) {
  auto r = Parse({"example.TestWebSite.test_es", "-u", "10:20:30", "--hits", "5"});
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->spec.test(), "example.TestWebSite.test_es");
  EXPECT_EQ(std::vector<int64_t>(r->spec.users().begin(), r->spec.users().end()),
            (std::vector<int64_t>{10, 20, 30}));
  EXPECT_EQ(std::vector<int64_t>(r->spec.hits().begin(), r->spec.hits().end()),
            (std::vector<int64_t>{5}));
  EXPECT_FALSE(r->spec.has_duration());
}

TEST(Options, DurationReplacesHits) {
  auto r = Parse(
      {"--url", "http://127.0.0.1:8080/", "-u50", "-d", "2.5", "--threads=1", "--timeout", "1.5"});
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->spec.users(0), 50);
  EXPECT_EQ(spec::Seconds(r->spec.duration()), 2.5);
  EXPECT_TRUE(r->spec.hits().empty());
  EXPECT_EQ(r->spec.threads(), 1);
  EXPECT_EQ(r->spec.timeout().seconds(), 1);
  EXPECT_EQ(r->spec.timeout().nanos(), 500'000'000);
  EXPECT_EQ(r->spec.url(), "http://127.0.0.1:8080/");
}

TEST(Options, DefaultsAreOneUserOneExecution) {
  auto r = Parse({"t.A.b"});
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->spec.users_size(), 1);
  EXPECT_EQ(r->spec.users(0), 1);
  ASSERT_EQ(r->spec.hits_size(), 1);
  EXPECT_EQ(r->spec.hits(0), 1);
  EXPECT_EQ(r->spec.threads(), 0);  // each engine picks
}

TEST(Options, ScenarioFilesAreReadLater) {
  auto r = Parse({"steps.json", "-u", "2"});
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->scenario_path, "steps.json");
  EXPECT_TRUE(r->spec.test().empty());
}

TEST(Options, RejectsBadInputWithOneMessage) {
  const std::vector<std::vector<std::string>> bad = {
      {"t.A.b", "--bogus"},
      {"t.A.b", "-u", "abc"},
      {"t.A.b", "-u", "-3"},
      {"t.A.b", "-u", "0"},
      {"t.A.b", "--hits", "0"},
      {"t.A.b", "--hits", "1::2"},
      {"t.A.b", "--hits", "10000000000000"},
      {"t.A.b", "-d", "0"},
      {"t.A.b", "-d", "x"},
      {"t.A.b", "-d", "1e9"},
      {"t.A.b", "--hits", "5", "-d", "5"},
      {"--url", "notaurl"},
      {"--url", "ws://h/"},
      {},
      {"t.A.b", "c.D.e"},
      {"t.A.b", "--url", "http://h/"},
      {"--test-runner", "x", "--url", "http://h/"},
      {"t.A.b", "--output", "xml"},
      {"t.A.b", "--threads", "0"},
      {"t.A.b", "-u"},
      {"t.A.b", "--quiet=yes"},
      {"t.A.b", "--timeout", "-1"},
      {"t.A.b", "--timeout", "7200"},
      {"t.A.b", "-x"},
      {"t.A.b", "--workers", "2"},         // needs --controller
      {"t.A.b", "--loss-policy", "fail"},  // needs --controller
      {"t.A.b", "--label", "bad key=1"},
      {"t.A.b", "--label", "k=line\nbreak"},
      {"t.A.b", "--worker-cpu", "lots", "--controller", "h:1"},
      {"notatest"},
      {"t.A.b", "-u", "3000000:3000000:3000000:3000000", "--hits", "1000000000000"},
  };
  for (const auto& args : bad) {
    auto r = Parse(args);
    EXPECT_FALSE(r.ok()) << testing::PrintToString(args);
    if (r.ok()) continue;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_FALSE(r.status().message().empty());
    EXPECT_EQ(r.status().message().find('\n'), std::string::npos) << r.status().message();
  }
}

// The test's source is a oneof in the proto: a second source must be refused, not replace the
// first.
TEST(Options, OneTestSourceOnly) {
  const std::vector<std::vector<std::string>> two = {
      {"t.A.b", "--url", "http://h/"},
      {"--url", "http://h/", "t.A.b"},
      {"--url", "http://h/", "s.json"},
      {"--test-runner", "x", "--url", "http://h/"},
      {"--url", "http://h/", "--test-runner", "x"},
  };
  for (const auto& args : two) {
    auto r = Parse(args);
    ASSERT_FALSE(r.ok()) << testing::PrintToString(args);
    EXPECT_NE(r.status().message().find("give one test"), std::string::npos)
        << r.status().message();
  }
  auto same = Parse({"--url", "http://h/a", "--url", "http://h/b"});  // a flag given again
  ASSERT_TRUE(same.ok()) << same.status().message();
  EXPECT_EQ(same->spec.url(), "http://h/b");
}

TEST(Options, NamesTheFlagAtFault) {
  auto r = Parse({"t.A.b", "-u", "0"});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("--users"), std::string::npos) << r.status().message();
  r = Parse({"t.A.b", "--hits", "5", "-d", "5"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "--hits and --duration cannot be used together");
}

TEST(Options, HelpAndVersionNeedNoTest) {
  EXPECT_TRUE(Parse({"--help"})->help);
  EXPECT_TRUE(Parse({"--version"}).ok());
}

TEST(Options, HelpListsEveryRunOption) {
  const std::string help = Usage();
  for (const auto& option : spec::RunOptions()) {
    EXPECT_NE(help.find(option.flag), std::string::npos) << option.flag;
  }
}

// The docs' option tables cover the schema: every run option and every runner flag of --help.
TEST(Options, DocsListEveryFlag) {
  std::ifstream file(std::string(LOADS_DOCS_DIR) + "/cli.md");
  ASSERT_TRUE(file);
  const std::string docs((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  // In a table cell: `--flag` or `--flag VALUE`.
  const auto documented = [&](const std::string& flag) {
    return docs.find("`" + flag + "`") != std::string::npos ||
           docs.find("`" + flag + " ") != std::string::npos;
  };
  for (const auto& option : spec::RunOptions()) EXPECT_TRUE(documented(option.flag)) << option.flag;
  const std::string help = Usage();
  for (size_t at = help.find("  --"); at != std::string::npos; at = help.find("  --", at + 1)) {
    const std::string flag = help.substr(at + 2, help.find_first_of(" ,\n", at + 2) - at - 2);
    EXPECT_TRUE(documented(flag)) << flag;
  }
}

// A scenario's `load` keys come from the option table: each is documented in scenarios.md, and
// one that is not in the table is refused, naming them all.
TEST(RunSpec, ScenarioLoadKeysAreTheTablesAndDocumented) {
  std::ifstream file(std::string(LOADS_DOCS_DIR) + "/scenarios.md");
  ASSERT_TRUE(file);
  const std::string docs((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  int keys = 0;
  for (const auto& option : spec::RunOptions()) {
    if (*option.scenario_key == '\0') continue;
    ++keys;
    EXPECT_NE(docs.find(std::string("`") + option.scenario_key + "`"), std::string::npos)
        << option.scenario_key;
  }
  EXPECT_EQ(keys, 12);
  v1::RunSpec spec;
  spec.set_scenario(R"({"load": {"timeout": 5}, "steps": [{"think": 0}]})");
  const Status refused = spec::ApplyScenarioLoad(&spec, nullptr);
  EXPECT_EQ(refused.message(),
            "scenario: load.timeout: not a load option (users, hits, duration, stages, rate, "
            "rate_stages, max_users, arrivals, pause, pacing, threads, thresholds)");
  // A repeated key adds, as a repeated flag does; pause sets both its fields.
  spec.set_scenario(
      R"({"load": {"thresholds": ["p99<1s", "errors<1%"], "pause": [1, 2]}, "steps": [{"think": 0}]})");
  ASSERT_TRUE(spec::ApplyScenarioLoad(&spec, nullptr).ok());
  EXPECT_EQ(spec.thresholds_size(), 2);
  EXPECT_EQ(spec::Seconds(spec.pause_max()), 2);
}

TEST(RunSpec, CyclesAreBounded) {
  EXPECT_FALSE(spec::ParseCycles("99999999999", 1000));
  EXPECT_EQ(*spec::ParseCycles("1:2:3", 10), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_FALSE(spec::ParseCycles("", 10));
  EXPECT_FALSE(spec::ParseCycles("1:", 10));
}

v1::RunSpec UrlSpec() {
  v1::RunSpec spec;
  spec.set_url("http://127.0.0.1:1/");
  spec.add_users(2);
  spec.add_hits(3);
  return spec;
}

TEST(RunSpec, ValidatesEveryFieldForGrpcClients) {
  EXPECT_TRUE(spec::ValidateRunSpec(UrlSpec()).ok());
  std::vector<std::pair<std::string, std::function<void(v1::RunSpec&)>>> bad = {
      {"spec.users", [](v1::RunSpec& s) { s.clear_users(); }},
      {"spec.users", [](v1::RunSpec& s) { s.set_users(0, 0); }},
      {"spec.users", [](v1::RunSpec& s) { s.set_users(0, 10'000'001); }},
      {"spec.hits", [](v1::RunSpec& s) { s.set_hits(0, 10'000'000'000'000); }},
      {"spec.hits, spec.duration",
       [](v1::RunSpec& s) { *s.mutable_duration() = spec::ToDuration(5); }},
      {"spec.duration", [](v1::RunSpec& s) { *s.mutable_duration() = spec::ToDuration(1e9); }},
      {"spec.duration", [](v1::RunSpec& s) { *s.mutable_duration() = spec::ToDuration(-1); }},
      {"spec.workers", [](v1::RunSpec& s) { s.set_workers(1001); }},
      {"spec.threads", [](v1::RunSpec& s) { s.set_threads(-1); }},
      {"spec.timeout", [](v1::RunSpec& s) { s.mutable_timeout()->set_nanos(-5); }},
      {"spec.timeout", [](v1::RunSpec& s) { s.mutable_timeout()->set_nanos(1'000'000'000); }},
      {"spec.timeout", [](v1::RunSpec& s) { s.mutable_timeout()->set_nanos(1000); }},  // 1 us
      {"spec.connect_timeout",
       [](v1::RunSpec& s) { *s.mutable_connect_timeout() = spec::ToDuration(3600.001); }},
      {"spec.loss_policy",
       [](v1::RunSpec& s) { s.set_loss_policy(static_cast<v1::LossPolicy>(7)); }},
      {"spec.server_url", [](v1::RunSpec& s) { s.set_server_url("not a url"); }},
      {"spec.url", [](v1::RunSpec& s) { s.set_url("ftp://h/"); }},
      {"spec.test", [](v1::RunSpec& s) { s.set_test("x.y.z"); }},
      {"spec.test_library", [](v1::RunSpec& s) { s.set_test_library("bytes"); }},
      {"spec.scenario",
       [](v1::RunSpec& s) {
         s.clear_url();
         s.set_scenario("{");
       }},
      {"spec.worker_cpu", [](v1::RunSpec& s) { s.set_worker_cpu("1e3x"); }},
      {"spec.metadata", [](v1::RunSpec& s) { (*s.mutable_metadata())["a b"] = "c"; }},
      {"spec.metadata", [](v1::RunSpec& s) { (*s.mutable_metadata())["k"] = "x\ny"; }},
      // The load models, not mixed and bounded.
      {"spec.users",
       [](v1::RunSpec& s) {
         s.clear_hits();
         s.set_rate(10);
         *s.mutable_duration() = spec::ToDuration(1);
       }},
      {"spec.hits",
       [](v1::RunSpec& s) {
         s.clear_users();
         s.set_rate(10);
       }},
      {"spec.duration",
       [](v1::RunSpec& s) {
         s.clear_users();
         s.clear_hits();
         s.set_rate(10);
       }},
      {"spec.rate", [](v1::RunSpec& s) { s.set_rate(-1); }},
      {"spec.rate", [](v1::RunSpec& s) { s.set_rate(2e7); }},
      {"spec.stages",
       [](v1::RunSpec& s) {
         s.clear_hits();
         s.add_stages()->set_target(1);  // lasting 0 s
       }},
      {"spec.stages",
       [](v1::RunSpec& s) {
         s.clear_users();
         s.clear_hits();
         s.set_rate(10);
         auto* stage = s.add_stages();
         *stage->mutable_duration() = spec::ToDuration(1);
         stage->set_target(5);
       }},
      {"spec.hits",
       [](v1::RunSpec& s) {
         auto* stage = s.add_stages();
         *stage->mutable_duration() = spec::ToDuration(1);
         stage->set_target(5);
       }},
      {"spec.max_users", [](v1::RunSpec& s) { s.set_max_users(5); }},
      {"spec.arrivals", [](v1::RunSpec& s) { s.set_arrivals(v1::ARRIVALS_POISSON); }},
      {"spec.arrivals", [](v1::RunSpec& s) { s.set_arrivals(static_cast<v1::Arrivals>(9)); }},
      {"spec.pacing", [](v1::RunSpec& s) { *s.mutable_pacing() = spec::ToDuration(-1); }},
      {"spec.pacing",
       [](v1::RunSpec& s) {
         *s.mutable_pacing() = spec::ToDuration(1);
         *s.mutable_pause_min() = spec::ToDuration(1);
       }},
      {"spec.pause_min",
       [](v1::RunSpec& s) {
         *s.mutable_pause_min() = spec::ToDuration(2);
         *s.mutable_pause_max() = spec::ToDuration(1);
       }},
  };
  for (auto& [field, change] : bad) {
    v1::RunSpec spec = UrlSpec();
    change(spec);
    const Status status = spec::ValidateRunSpec(spec);
    EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << field;
    EXPECT_TRUE(status.message().starts_with(field)) << field << ": " << status.message();
  }
  v1::RunSpec named = UrlSpec();
  named.clear_url();
  named.set_test("mod.Class.method");
  EXPECT_FALSE(spec::ValidateRunSpec(named).ok());  // a controller needs the library's bytes
  EXPECT_TRUE(
      spec::ValidateRunSpec(named, {.naming = spec::Naming::kFlags, .library_required = false})
          .ok());
  EXPECT_TRUE(spec::ValidateRunId("abc-1", "run_id").ok());
  EXPECT_FALSE(spec::ValidateRunId("a\nb", "run_id").ok());
  EXPECT_FALSE(spec::ValidateRunId("", "run_id").ok());
  EXPECT_FALSE(spec::ValidateRunId(std::string(201, 'x'), "run_id").ok());
}

TEST(RunSpec, LoadModelsReachThePlan) {
  v1::RunSpec open;
  open.set_url("http://127.0.0.1:1/");
  open.set_rate(0.5);
  *open.mutable_duration() = spec::ToDuration(10);
  open.set_max_users(3);
  open.set_arrivals(v1::ARRIVALS_POISSON);
  ASSERT_TRUE(spec::ValidateRunSpec(open).ok()) << spec::ValidateRunSpec(open).message();
  const common::Assignment plan = spec::ToPlan(open);
  EXPECT_TRUE(plan.load.open());
  EXPECT_EQ(plan.load.rate, 0.5);
  EXPECT_EQ(plan.load.max_users, 3);
  EXPECT_TRUE(plan.load.poisson);
  EXPECT_TRUE(plan.users.empty());
  auto paced = Parse({"t.A.b", "-u", "3", "-d", "5", "--pause", "0.5:1.5"});
  ASSERT_TRUE(paced.ok()) << paced.status().message();
  const common::Assignment paced_plan = spec::ToPlan(paced->spec);
  EXPECT_EQ(paced_plan.load.pause_min, 0.5);
  EXPECT_EQ(paced_plan.load.pause_max, 1.5);
  auto ramp = Parse({"t.A.b", "--stages", "30s:100,1m:100,30s:0"});
  ASSERT_TRUE(ramp.ok()) << ramp.status().message();
  EXPECT_EQ(ramp->spec.users_size(), 0);  // no default user: the ramp starts from 0
  EXPECT_EQ(ramp->spec.hits_size(), 0);
  EXPECT_EQ(spec::ToPlan(ramp->spec).load.stages.size(), 3u);
}

TEST(RunSpec, AScenarioSaysHowHardWhereTheCommandLineDoesNot) {
  v1::RunSpec spec;
  spec.set_scenario(
      R"({"load": {"rate": 200, "duration": 1.5, "pause": [1, 2]}, "steps": [{"think": 0}]})");
  spec.set_rate(100);
  const std::set<std::string> given = {"rate"};
  EXPECT_TRUE(spec::ApplyScenarioLoad(&spec, &given).ok());
  EXPECT_EQ(spec.rate(), 100);                     // the command line wins
  EXPECT_EQ(spec::Seconds(spec.duration()), 1.5);  // the scenario fills the rest
  EXPECT_EQ(spec::Seconds(spec.pause_min()), 1);
  EXPECT_EQ(spec::Seconds(spec.pause_max()), 2);
  v1::RunSpec bad;
  bad.set_scenario(R"({"load": {"rate": "fast"}, "steps": [{"think": 0}]})");
  const Status status = spec::ApplyScenarioLoad(&bad, nullptr);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("load.rate"), std::string::npos) << status.message();
}

TEST(RunSpec, DurationsAreExactToTheNanosecond) {
  EXPECT_EQ(spec::ToDuration(1.5).seconds(), 1);
  EXPECT_EQ(spec::ToDuration(1.5).nanos(), 500'000'000);
  EXPECT_EQ(spec::ToDuration(0.001).nanos(), 1'000'000);
  EXPECT_EQ(spec::ToDuration(2.9999999999).seconds(), 3);  // rounds up to the next second
  EXPECT_EQ(spec::ToDuration(2.9999999999).nanos(), 0);
  EXPECT_EQ(spec::Seconds(spec::ToDuration(31'622'400)), 31'622'400);
  EXPECT_TRUE(spec::IsLength(google::protobuf::Duration()));
  google::protobuf::Duration mixed;  // seconds and nanos of opposite signs
  mixed.set_seconds(1);
  mixed.set_nanos(-1);
  EXPECT_FALSE(spec::IsLength(mixed));
}

// A RunSpec as clients built before durations were google.protobuf.Durations wrote it: the
// same bytes a stored run of an older controller holds.
std::string LegacySpecBytes(int extra_field = 0) {
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream out(&bytes);
    google::protobuf::io::CodedOutputStream coded(&out);
    const auto fixed_double = [&](int field, double value) {
      uint64_t bits;
      std::memcpy(&bits, &value, sizeof bits);
      coded.WriteTag(static_cast<uint32_t>(field) << 3 | 1);
      coded.WriteLittleEndian64(bits);
    };
    const auto varint = [&](int field, uint64_t value) {
      coded.WriteTag(static_cast<uint32_t>(field) << 3);
      coded.WriteVarint64(value);
    };
    const std::string url = "http://127.0.0.1:1/";
    coded.WriteTag(3 << 3 | 2);  // url
    coded.WriteVarint32(static_cast<uint32_t>(url.size()));
    coded.WriteString(url);
    varint(4, 3);            // users: 3
    fixed_double(6, 2.5);    // duration
    varint(10, 1500);        // connect_timeout_ms
    varint(11, 250);         // timeout_ms
    fixed_double(24, 0.25);  // pause_min
    fixed_double(25, 0.75);  // pause_max
    if (extra_field) varint(extra_field, 1);
  }
  return bytes;
}

TEST(RunSpec, LegacyDurationsAreUpgradedAndUnknownFieldsRefused) {
  v1::RunSpec legacy;
  ASSERT_TRUE(legacy.ParseFromString(LegacySpecBytes()));
  EXPECT_FALSE(legacy.has_duration());  // only unknown fields so far
  ASSERT_TRUE(spec::UpgradeLegacyFields(&legacy).ok());
  EXPECT_EQ(spec::Seconds(legacy.duration()), 2.5);
  EXPECT_EQ(spec::Seconds(legacy.connect_timeout()), 1.5);
  EXPECT_EQ(spec::Seconds(legacy.timeout()), 0.25);
  EXPECT_EQ(spec::Seconds(legacy.pause_min()), 0.25);
  EXPECT_EQ(spec::Seconds(legacy.pause_max()), 0.75);
  EXPECT_TRUE(legacy.GetReflection()->GetUnknownFields(legacy).empty());
  EXPECT_TRUE(spec::ValidateRunSpec(legacy).ok()) << spec::ValidateRunSpec(legacy).message();
  EXPECT_EQ(spec::ToPlan(legacy).timeout_ms, 250);
  // A stored run reads the same.
  EXPECT_EQ(spec::Seconds(spec::FromStored(LegacySpecBytes()).duration()), 2.5);

  // A legacy stage: its seconds were field 1, a double.
  v1::RunSpec ramped;
  ramped.set_url("http://127.0.0.1:1/");
  std::string stage;
  {
    google::protobuf::io::StringOutputStream out(&stage);
    google::protobuf::io::CodedOutputStream coded(&out);
    const double seconds = 30, target = 100;
    uint64_t bits;
    std::memcpy(&bits, &seconds, sizeof bits);
    coded.WriteTag(1 << 3 | 1);
    coded.WriteLittleEndian64(bits);
    std::memcpy(&bits, &target, sizeof bits);
    coded.WriteTag(2 << 3 | 1);
    coded.WriteLittleEndian64(bits);
  }
  ASSERT_TRUE(ramped.add_stages()->ParseFromString(stage));
  ASSERT_TRUE(spec::UpgradeLegacyFields(&ramped).ok());
  EXPECT_EQ(spec::Seconds(ramped.stages(0).duration()), 30);
  EXPECT_EQ(ramped.stages(0).target(), 100);

  // A field this controller does not know is not dropped without a word.
  v1::RunSpec unknown;
  ASSERT_TRUE(unknown.ParseFromString(LegacySpecBytes(/*extra_field=*/99)));
  const Status refused = spec::UpgradeLegacyFields(&unknown);
  EXPECT_EQ(refused.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(refused.message().find("unknown field 99"), std::string::npos) << refused.message();
}

TEST(RunSpec, PlanAppliesTheDefaults) {
  const common::Assignment plan = spec::ToPlan(UrlSpec());
  EXPECT_EQ(plan.test, "GET http://127.0.0.1:1/");
  EXPECT_EQ(plan.connect_timeout_ms, common::kDefaultConnectTimeoutMs);
  EXPECT_EQ(plan.timeout_ms, common::kDefaultTimeoutMs);
  EXPECT_EQ(plan.threads, 0);
  EXPECT_EQ(plan.users, (std::vector<int64_t>{2}));
}

}  // namespace
}  // namespace loads::runner
