// MetricsRegistry: counters, gauges and histograms, rendered in the Prometheus text format.
//
// A registry owns metric families (a name, a help text, a type) and their labelled series.
// Looking a series up takes a lock; updating one is lock-free (atomics), so hot paths keep the
// reference they got. prometheus-cpp is not packaged by Debian 12, so this small registry
// writes the text exposition format 0.0.4 itself (docs/architecture.md, "Observability").
// Thread-safety: every member function may be called from any thread at once; references to
// series stay valid for the registry's lifetime.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace prefstore {

// Label name/value pairs of one series, e.g. {{"operation", "set"}}. Order is kept as given.
using MetricLabels = std::vector<std::pair<std::string, std::string>>;

// A value that only goes up (events appended, retries).
class Counter {
 public:
  // Adds amount; a negative or zero amount is ignored (a counter never goes down).
  void add(double amount = 1.0) noexcept;
  // The total so far.
  [[nodiscard]] double value() const noexcept;

 private:
  std::atomic<double> m_value{0.0};
};

// A value that goes up and down (connections in use, projection lag).
class Gauge {
 public:
  // Replaces the value.
  void set(double value) noexcept;
  // Adds amount (negative to go down).
  void add(double amount) noexcept;
  // The current value.
  [[nodiscard]] double value() const noexcept;

 private:
  std::atomic<double> m_value{0.0};
};

// Observations counted into buckets with upper bounds (latencies in seconds).
class Histogram {
 public:
  // Requires: bounds strictly increasing; +Inf is implicit.
  explicit Histogram(std::vector<double> bounds);
  // Counts value in the first bucket whose bound is >= value (+Inf when none) and adds it to
  // the sum.
  void observe(double value) noexcept;
  // Observations so far, their sum, and the cumulative count per bound (then +Inf).
  [[nodiscard]] std::uint64_t count() const noexcept;
  [[nodiscard]] double sum() const noexcept;
  [[nodiscard]] std::vector<std::uint64_t> cumulative_counts() const;
  // The upper bounds given at construction (without +Inf).
  [[nodiscard]] const std::vector<double>& bounds() const noexcept { return m_bounds; }

 private:
  std::vector<double> m_bounds;
  std::unique_ptr<std::atomic<std::uint64_t>[]> m_buckets;  // one per bound, then +Inf
  std::atomic<double> m_sum{0.0};
};

// Latency buckets (seconds) for database calls: 0.5 ms to 10 s.
[[nodiscard]] const std::vector<double>& latency_buckets();

class MetricsRegistry {
 public:
  MetricsRegistry() = default;
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  // The series of family `name` with these labels, created on first use. Throws
  // std::invalid_argument when name or a label name is not a valid Prometheus name, or when the
  // family exists with another type (or, for histograms, other bounds).
  Counter& counter(const std::string& name, const std::string& help,
                   const MetricLabels& labels = {});
  Gauge& gauge(const std::string& name, const std::string& help, const MetricLabels& labels = {});
  Histogram& histogram(const std::string& name, const std::string& help,
                       const std::vector<double>& bounds, const MetricLabels& labels = {});

  // Every family in name order, each with `# HELP` and `# TYPE` lines and its series (label
  // values escaped; histograms as _bucket{le=...}, _sum and _count). Ends with a newline.
  [[nodiscard]] std::string render() const;

 private:
  enum class Type { counter, gauge, histogram };
  struct Family {
    Type type;
    std::string help;
    std::vector<double> bounds;
    std::map<MetricLabels, std::unique_ptr<Counter>> counters;
    std::map<MetricLabels, std::unique_ptr<Gauge>> gauges;
    std::map<MetricLabels, std::unique_ptr<Histogram>> histograms;
  };
  Family& family(const std::string& name, const std::string& help, Type type,
                 const MetricLabels& labels, const std::vector<double>& bounds);

  mutable std::mutex m_mutex;
  std::map<std::string, Family> m_families;
};

// Text of a sample value in the exposition format: integers without a fraction, NaN, +Inf.
[[nodiscard]] std::string format_metric_value(double value);

}  // namespace prefstore
