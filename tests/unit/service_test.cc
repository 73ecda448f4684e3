// The gRPC service's own logic, called in-process (no channel): who may call what, how each
// kind of bad request is answered (the status code and the field it names), idempotent
// StartRun, launching when too few workers are idle, and StopRun. A real broker runs behind it
// with no worker connected; the launcher is a fake (tests/fakes/fake_launcher.h).

#include "loads/controller/service.h"

#include <grpcpp/test/server_context_test_spouse.h>
#include <gtest/gtest.h>

#include "loads/common/run_spec.h"
#include "tests/fakes/fake_launcher.h"

namespace loads::controller {
namespace {

class ServiceTest : public ::testing::Test {
 protected:
  ServiceTest() {
    BrokerOptions options;
    options.sdk_version = "0.1.0";
    broker_ = std::make_unique<Broker>(options);
    broker_->SetReportFormatter(ControllerService::FinalReport);
    broker_->SetAbortJudges(ControllerService::MakeAbortJudge);
    EXPECT_TRUE(broker_->Start().ok());
  }

  // The service, with a launcher (the fake) or without.
  ControllerService& Service(bool with_launcher = false) {
    service_ = std::make_unique<ControllerService>(
        broker_.get(), with_launcher ? &launcher_ : nullptr, "api-secret", "tcp://10.0.0.1:5555");
    service_->SetReadToken("read-secret");
    return *service_;
  }

  // A call's context, carrying `token` as a bearer token ("" = none).
  std::unique_ptr<grpc::ServerContext> Context(const std::string& token = "api-secret") {
    auto context = std::make_unique<grpc::ServerContext>();
    if (!token.empty()) {
      // The spouse owns the metadata's strings: it lives as long as the test.
      spouses_.push_back(std::make_unique<grpc::testing::ServerContextTestSpouse>(context.get()));
      spouses_.back()->AddClientMetadata("authorization", "Bearer " + token);
    }
    return context;
  }

  static v1::StartRunRequest Request(const std::string& run_id) {
    v1::StartRunRequest request;
    request.set_run_id(run_id);
    v1::RunSpec* spec = request.mutable_spec();
    spec->set_url("http://127.0.0.1:1/");
    spec->add_users(2);
    spec->add_hits(3);
    return request;
  }

  grpc::Status Start(ControllerService& service, const v1::StartRunRequest& request,
                     v1::Run* run = nullptr, const std::string& token = "api-secret") {
    v1::Run ignored;
    return service.StartRun(Context(token).get(), &request, run ? run : &ignored);
  }

  std::unique_ptr<Broker> broker_;
  testing::FakeLauncher launcher_;
  std::unique_ptr<ControllerService> service_;
  std::vector<std::unique_ptr<grpc::testing::ServerContextTestSpouse>> spouses_;
};

TEST_F(ServiceTest, OnlyTheApiTokenStartsRunsAndTheReadTokenOnlyReads) {
  ControllerService& service = Service();
  EXPECT_EQ(Start(service, Request("a"), nullptr, "").error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Start(service, Request("a"), nullptr, "wrong").error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Start(service, Request("a"), nullptr, "read-secret").error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  v1::GetRunRequest get;
  get.set_run_id("nope");
  v1::Run run;
  EXPECT_EQ(service.GetRun(Context("read-secret").get(), &get, &run).error_code(),
            grpc::StatusCode::NOT_FOUND);  // past the token check: may read
  EXPECT_EQ(service.GetRun(Context("").get(), &get, &run).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(ServiceTest, EachBadRequestGetsItsCodeAndNamesWhatIsWrong) {
  ControllerService& service = Service();
  service.SetAllowTargets(
      std::make_shared<const common::TargetAllowList>(*common::TargetAllowList::Parse({"*.svc"})));
  struct Case {
    const char* what;
    std::function<void(v1::StartRunRequest&)> change;
    grpc::StatusCode code;
    const char* says;
  };
  const std::vector<Case> cases = {
      {"run id", [](auto& r) { r.set_run_id("a b"); }, grpc::StatusCode::INVALID_ARGUMENT,
       "run_id"},
      {"users", [](auto& r) { r.mutable_spec()->set_users(0, 0); },
       grpc::StatusCode::INVALID_ARGUMENT, "spec.users"},
      {"timeout", [](auto& r) { r.mutable_spec()->mutable_timeout()->set_seconds(7200); },
       grpc::StatusCode::INVALID_ARGUMENT, "spec.timeout"},
      {"no source", [](auto& r) { r.mutable_spec()->clear_url(); },
       grpc::StatusCode::INVALID_ARGUMENT, "give exactly one of them"},
      {"unknown field",
       [](auto& r) {
         r.mutable_spec()
             ->GetReflection()
             ->MutableUnknownFields(r.mutable_spec())
             ->AddVarint(103, 1);
       },
       grpc::StatusCode::INVALID_ARGUMENT, "spec: unknown field 103"},
      {"mail", [](auto& r) { r.mutable_spec()->add_notify("email:ops@example.com"); },
       grpc::StatusCode::FAILED_PRECONDITION, "no mail server"},
      {"target", [](auto& r) { r.mutable_spec()->set_url("http://10.0.0.9/"); },
       grpc::StatusCode::PERMISSION_DENIED, "not an allowed target"},
      {"workers", [](auto& r) { r.mutable_spec()->set_url("http://web.svc/"); },
       grpc::StatusCode::RESOURCE_EXHAUSTED, "no launcher is configured"},
  };
  for (const Case& c : cases) {
    v1::StartRunRequest request = Request("r");
    c.change(request);
    const grpc::Status status = Start(service, request);
    EXPECT_EQ(status.error_code(), c.code) << c.what << ": " << status.error_message();
    EXPECT_NE(status.error_message().find(c.says), std::string::npos)
        << c.what << ": " << status.error_message();
  }
  EXPECT_TRUE(broker_->ListRunSummaries().empty());  // nothing was started
}

TEST_F(ServiceTest, TooFewWorkersLaunchesTheRestAndARetryGetsTheSameRun) {
  ControllerService& service = Service(/*with_launcher=*/true);
  v1::StartRunRequest request = Request("r1");
  request.mutable_spec()->set_workers(3);
  request.mutable_spec()->set_worker_cpu("2");
  v1::Run run;
  ASSERT_TRUE(Start(service, request, &run).ok());
  EXPECT_EQ(run.state(), v1::RUN_STATE_ASSIGNING);
  EXPECT_EQ(run.test(), "GET http://127.0.0.1:1/");
  const auto launched = launcher_.Requests();
  ASSERT_EQ(launched.size(), 1u);
  EXPECT_EQ(launched[0].run_id, "r1");
  EXPECT_EQ(launched[0].workers, 3);                       // none idle
  EXPECT_EQ(launched[0].endpoint, "tcp://10.0.0.1:5555");  // --advertise
  EXPECT_EQ(launched[0].cpu, "2");

  // The same request again (a client's retry): the run as it is, nothing launched.
  v1::Run again;
  ASSERT_TRUE(Start(service, request, &again).ok());
  EXPECT_EQ(again.run_id(), "r1");
  EXPECT_EQ(launcher_.Requests().size(), 1u);
  // Another spec under that id is refused.
  request.mutable_spec()->set_hits(0, 4);
  EXPECT_EQ(Start(service, request).error_code(), grpc::StatusCode::FAILED_PRECONDITION);

  // A launcher that cannot launch: the run is refused with its reason, and not kept.
  launcher_.SetAnswer("kubernetes: cannot create pod: exceeded quota");
  const grpc::Status refused = Start(service, Request("r2"));
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(refused.error_message(), "kubernetes: cannot create pod: exceeded quota");
  v1::GetRunRequest get;
  get.set_run_id("r2");
  EXPECT_EQ(service.GetRun(Context().get(), &get, &run).error_code(), grpc::StatusCode::NOT_FOUND);

  // Stopped while it waits for its workers.
  v1::StopRunRequest stop;
  stop.set_run_id("r1");
  v1::Run stopped;
  ASSERT_TRUE(service.StopRun(Context().get(), &stop, &stopped).ok());
  ASSERT_TRUE(broker_->WaitForRun("r1", std::chrono::seconds(5)));
  get.set_run_id("r1");
  ASSERT_TRUE(service.GetRun(Context().get(), &get, &run).ok());
  EXPECT_EQ(run.state(), v1::RUN_STATE_STOPPED);
  EXPECT_FALSE(run.report_json().empty());
}

TEST_F(ServiceTest, ARunReadsBackWithItsDurations) {
  ControllerService& service = Service(/*with_launcher=*/true);
  v1::StartRunRequest request = Request("d");
  request.mutable_spec()->clear_hits();
  *request.mutable_spec()->mutable_duration() = spec::ToDuration(2.5);
  *request.mutable_spec()->mutable_connect_timeout() = spec::ToDuration(0.25);
  v1::Run run;
  ASSERT_TRUE(Start(service, request, &run).ok());
  EXPECT_EQ(run.spec().duration().seconds(), 2);
  EXPECT_EQ(run.spec().duration().nanos(), 500'000'000);
  EXPECT_EQ(run.spec().connect_timeout().nanos(), 250'000'000);
}

}  // namespace
}  // namespace loads::controller
