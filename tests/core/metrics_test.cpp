// MetricsRegistry (core/metrics.hpp): the Prometheus text exposition format, label escaping,
// histogram buckets, name checks, and exact counts under concurrent updates.
#include <gtest/gtest.h>

#include <stdexcept>
#include <thread>
#include <vector>

#include "prefstore/metrics.hpp"

namespace prefstore {
namespace {

TEST(Metrics, CountersAndGaugesRenderWithHelpTypeAndLabels) {
  MetricsRegistry r;
  r.counter("prefstore_retries_total", "Retries", {{"operation", "set"}}).add();
  r.counter("prefstore_retries_total", "Retries", {{"operation", "set"}}).add(2);
  r.counter("prefstore_retries_total", "Retries", {{"operation", "get"}}).add();
  r.gauge("prefstore_up", "Up").set(1);
  EXPECT_EQ(r.render(),
            "# HELP prefstore_retries_total Retries\n"
            "# TYPE prefstore_retries_total counter\n"
            "prefstore_retries_total{operation=\"get\"} 1\n"
            "prefstore_retries_total{operation=\"set\"} 3\n"
            "# HELP prefstore_up Up\n"
            "# TYPE prefstore_up gauge\n"
            "prefstore_up 1\n");
}

TEST(Metrics, LabelValuesAndHelpAreEscaped) {
  MetricsRegistry r;
  r.gauge("g", "line one\nback\\slash", {{"user", "a\"b\\c\nd"}}).set(-2.5);
  EXPECT_EQ(r.render(),
            "# HELP g line one\\nback\\\\slash\n"
            "# TYPE g gauge\n"
            "g{user=\"a\\\"b\\\\c\\nd\"} -2.5\n");
}

TEST(Metrics, HistogramBucketsAreCumulativeWithSumAndCount) {
  MetricsRegistry r;
  Histogram& h = r.histogram("lat_seconds", "Latency", {0.001, 0.01, 0.1}, {{"op", "set"}});
  for (const double v : {0.0005, 0.001, 0.005, 0.05, 3.0}) h.observe(v);
  EXPECT_EQ(h.count(), 5u);
  EXPECT_DOUBLE_EQ(h.sum(), 3.0565);
  const std::string text = r.render();
  EXPECT_NE(text.find("# TYPE lat_seconds histogram\n"), std::string::npos) << text;
  // A value equal to a bound falls in that bound's bucket (le = less or equal).
  EXPECT_NE(text.find("lat_seconds_bucket{op=\"set\",le=\"0.001\"} 2\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("lat_seconds_bucket{op=\"set\",le=\"0.01\"} 3\n"), std::string::npos);
  EXPECT_NE(text.find("lat_seconds_bucket{op=\"set\",le=\"0.1\"} 4\n"), std::string::npos);
  EXPECT_NE(text.find("lat_seconds_bucket{op=\"set\",le=\"+Inf\"} 5\n"), std::string::npos);
  EXPECT_NE(text.find("lat_seconds_sum{op=\"set\"} 3.0565\n"), std::string::npos) << text;
  EXPECT_NE(text.find("lat_seconds_count{op=\"set\"} 5\n"), std::string::npos);
}

TEST(Metrics, BadNamesTypeClashesAndBoundsAreRefused) {
  MetricsRegistry r;
  EXPECT_THROW(r.counter("9starts_with_digit", "x"), std::invalid_argument);
  EXPECT_THROW(r.counter("has-dash", "x"), std::invalid_argument);
  EXPECT_THROW(r.counter("ok", "x", {{"bad label", "v"}}), std::invalid_argument);
  EXPECT_THROW(r.histogram("h", "x", {1.0}, {{"le", "v"}}), std::invalid_argument);
  r.counter("taken", "x");
  EXPECT_THROW(r.gauge("taken", "x"), std::invalid_argument);
  r.histogram("hist", "x", {1.0, 2.0});
  EXPECT_THROW(r.histogram("hist", "x", {1.0, 3.0}), std::invalid_argument);
  EXPECT_THROW(Histogram({2.0, 1.0}), std::invalid_argument);
}

TEST(Metrics, ValuesAreFormattedAsTheExpositionFormatExpects) {
  EXPECT_EQ(format_metric_value(3), "3");
  EXPECT_EQ(format_metric_value(0.0005), "0.0005");
  EXPECT_EQ(format_metric_value(1.0 / 0.0), "+Inf");
  EXPECT_EQ(format_metric_value(-1.0 / 0.0), "-Inf");
  EXPECT_EQ(format_metric_value(0.0 / 0.0), "NaN");
  EXPECT_EQ(format_metric_value(1e20), "1e+20");
}

TEST(Metrics, ConcurrentUpdatesAreAllCounted) {
  MetricsRegistry r;
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&r] {
      Counter& c = r.counter("n_total", "n");
      Histogram& h = r.histogram("h", "h", {0.5});
      for (int i = 0; i < 10000; ++i) {
        c.add();
        h.observe(1.0);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(r.counter("n_total", "n").value(), 80000.0);
  EXPECT_EQ(r.histogram("h", "h", {0.5}).count(), 80000u);
  EXPECT_EQ(r.histogram("h", "h", {0.5}).sum(), 80000.0);
}

}  // namespace
}  // namespace prefstore
