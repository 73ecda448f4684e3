// The load model's arithmetic (loads/common/load_model.h): the arrival schedule of a constant or
// ramped rate, users along stages, the split over workers, and stage parsing.

#include "loads/common/load_model.h"

#include <gtest/gtest.h>

#include <cmath>

namespace loads::common {
namespace {

TEST(RateSchedule, AConstantRateSpacesArrivalsEvenly) {
  LoadModel load;
  load.rate = 1000;
  const RateSchedule schedule(load, 10);
  EXPECT_DOUBLE_EQ(schedule.TotalArrivals(), 10'000);
  EXPECT_DOUBLE_EQ(schedule.EndSeconds(), 10);
  EXPECT_DOUBLE_EQ(*schedule.TimeOf(0), 0);
  EXPECT_DOUBLE_EQ(*schedule.TimeOf(1), 0.001);
  EXPECT_NEAR(*schedule.TimeOf(9'999), 9.999, 1e-9);
  EXPECT_FALSE(schedule.TimeOf(10'000));  // the run is over: exactly 10,000 arrivals
  EXPECT_DOUBLE_EQ(schedule.ArrivalsBy(2.5), 2'500);
}

TEST(RateSchedule, RatesBelowOnePerSecondWork) {
  LoadModel load;
  load.rate = 0.5;
  const RateSchedule schedule(load, 7);
  EXPECT_DOUBLE_EQ(*schedule.TimeOf(1), 2);
  EXPECT_DOUBLE_EQ(*schedule.TimeOf(3), 6);
  EXPECT_FALSE(schedule.TimeOf(4));  // 3.5 arrivals due in 7 s: 0, 2, 4, 6 s
}

TEST(RateSchedule, ARampIsInvertedExactly) {
  LoadModel load;
  load.rate = 100;
  load.rate_stages = {{10, 1000}, {5, 1000}, {5, 0}};
  const RateSchedule schedule(load, 0);
  EXPECT_DOUBLE_EQ(schedule.EndSeconds(), 20);
  EXPECT_DOUBLE_EQ(schedule.PeakRate(), 1000);
  EXPECT_DOUBLE_EQ(schedule.RateAt(5), 550);
  // 100 -> 1000 over 10 s: 5,500 arrivals; then 5,000; then 2,500.
  EXPECT_DOUBLE_EQ(schedule.TotalArrivals(), 13'000);
  for (double t : {0.0, 0.5, 3.3, 9.99, 10.0, 12.0, 17.5, 19.9}) {
    EXPECT_NEAR(*schedule.TimeOf(schedule.ArrivalsBy(t)), t, 1e-9) << t;
  }
}

TEST(RateSchedule, ARampFromZero) {
  LoadModel load;
  load.rate_stages = {{4, 100}};
  const RateSchedule schedule(load, 0);
  EXPECT_DOUBLE_EQ(schedule.TotalArrivals(), 200);
  EXPECT_DOUBLE_EQ(*schedule.TimeOf(0), 0);
  EXPECT_NEAR(*schedule.TimeOf(50), 2, 1e-9);  // Λ(t) = 12.5 t^2
}

TEST(UserSchedule, UsersFollowTheLineRounded) {
  const UserSchedule schedule(0, {{10, 100}, {10, 100}, {10, 0}});
  EXPECT_EQ(schedule.PeakUsers(), 100);
  EXPECT_DOUBLE_EQ(schedule.EndSeconds(), 30);
  EXPECT_EQ(schedule.UsersAt(0), 0);
  EXPECT_EQ(schedule.UsersAt(0.05), 1);  // 0.5 rounds up
  EXPECT_EQ(schedule.UsersAt(5), 50);
  EXPECT_EQ(schedule.UsersAt(15), 100);
  EXPECT_EQ(schedule.UsersAt(25), 50);
  EXPECT_EQ(schedule.UsersAt(31), 0);
}

TEST(Share, WorkersShareAddsUpToTheWhole) {
  for (int64_t stride : {1, 2, 3, 7}) {
    for (int64_t total : {0, 1, 2, 5, 100, 101}) {
      int64_t sum = 0;
      for (int64_t offset = 0; offset < stride; ++offset) sum += ShareOf(total, offset, stride);
      EXPECT_EQ(sum, total) << total << " over " << stride;
    }
  }
}

TEST(Stages, ParseDurationsWithUnits) {
  auto stages = ParseStages("30s:100,1m:100,0.5h:0,2:7.5");
  ASSERT_TRUE(stages.ok()) << stages.status().message();
  ASSERT_EQ(stages->size(), 4u);
  EXPECT_EQ((*stages)[0], (Stage{30, 100}));
  EXPECT_EQ((*stages)[1], (Stage{60, 100}));
  EXPECT_EQ((*stages)[2], (Stage{1800, 0}));
  EXPECT_EQ((*stages)[3], (Stage{2, 7.5}));
  EXPECT_EQ(FormatStages(*stages), "30s:100,60s:100,1800s:0,2s:7.5");
  for (const char* bad :
       {"", "30s", "30s:", ":5", "0s:5", "-1s:5", "30x:5", "30s:-1", "1s:5,", "1s:nan", "1s:inf"}) {
    auto refused = ParseStages(bad);
    EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_FALSE(refused.status().message().empty());
  }
}

}  // namespace
}  // namespace loads::common
