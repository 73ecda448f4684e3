// loads-runner's command line, and the run schema it shares with the controller
// (loads/common/run_spec.h): the flags land in the RunSpec fields the table names, and bad input
// of any kind gets one line naming the flag (or, over gRPC, the field).

#include "runner/options.h"

#include <gtest/gtest.h>

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
  EXPECT_EQ(r->spec.duration(), 0);
}

TEST(Options, DurationReplacesHits) {
  auto r = Parse(
      {"--url", "http://127.0.0.1:8080/", "-u50", "-d", "2.5", "--threads=1", "--timeout", "1.5"});
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->spec.users(0), 50);
  EXPECT_EQ(r->spec.duration(), 2.5);
  EXPECT_TRUE(r->spec.hits().empty());
  EXPECT_EQ(r->spec.threads(), 1);
  EXPECT_EQ(r->spec.timeout_ms(), 1500);
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
      {"spec.hits, spec.duration", [](v1::RunSpec& s) { s.set_duration(5); }},
      {"spec.duration", [](v1::RunSpec& s) { s.set_duration(1e9); }},
      {"spec.duration", [](v1::RunSpec& s) { s.set_duration(-1); }},
      {"spec.workers", [](v1::RunSpec& s) { s.set_workers(1001); }},
      {"spec.threads", [](v1::RunSpec& s) { s.set_threads(-1); }},
      {"spec.timeout_ms", [](v1::RunSpec& s) { s.set_timeout_ms(-5); }},
      {"spec.connect_timeout_ms", [](v1::RunSpec& s) { s.set_connect_timeout_ms(3'600'001); }},
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
         s.set_duration(1);
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
         s.add_stages()->set_seconds(0);
       }},
      {"spec.stages",
       [](v1::RunSpec& s) {
         s.clear_users();
         s.clear_hits();
         s.set_rate(10);
         auto* stage = s.add_stages();
         stage->set_seconds(1);
         stage->set_target(5);
       }},
      {"spec.hits",
       [](v1::RunSpec& s) {
         auto* stage = s.add_stages();
         stage->set_seconds(1);
         stage->set_target(5);
       }},
      {"spec.max_users", [](v1::RunSpec& s) { s.set_max_users(5); }},
      {"spec.arrivals", [](v1::RunSpec& s) { s.set_arrivals(v1::ARRIVALS_POISSON); }},
      {"spec.arrivals", [](v1::RunSpec& s) { s.set_arrivals(static_cast<v1::Arrivals>(9)); }},
      {"spec.pacing", [](v1::RunSpec& s) { s.set_pacing(-1); }},
      {"spec.pacing",
       [](v1::RunSpec& s) {
         s.set_pacing(1);
         s.set_pause_min(1);
       }},
      {"spec.pause_min",
       [](v1::RunSpec& s) {
         s.set_pause_min(2);
         s.set_pause_max(1);
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
  open.set_duration(10);
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
  EXPECT_EQ(spec.rate(), 100);      // the command line wins
  EXPECT_EQ(spec.duration(), 1.5);  // the scenario fills the rest
  EXPECT_EQ(spec.pause_min(), 1);
  EXPECT_EQ(spec.pause_max(), 2);
  v1::RunSpec bad;
  bad.set_scenario(R"({"load": {"rate": "fast"}, "steps": [{"think": 0}]})");
  const Status status = spec::ApplyScenarioLoad(&bad, nullptr);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("load.rate"), std::string::npos) << status.message();
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
