#include "prefstore/metrics.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <stdexcept>

namespace prefstore {
namespace {

void atomic_add(std::atomic<double>& target, double amount) noexcept {
  double current = target.load(std::memory_order_relaxed);
  while (!target.compare_exchange_weak(current, current + amount, std::memory_order_relaxed)) {
  }
}

bool valid_name(std::string_view name, bool allow_colon) {
  if (name.empty()) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool letter =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (allow_colon && c == ':');
    const bool digit = c >= '0' && c <= '9';
    if (!letter && !(digit && i > 0)) return false;
  }
  return true;
}

std::string escape_label_value(std::string_view v) {
  std::string out;
  for (const char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string escape_help(std::string_view v) {
  std::string out;
  for (const char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string label_text(const MetricLabels& labels, const std::string& extra_name = {},
                       const std::string& extra_value = {}) {
  if (labels.empty() && extra_name.empty()) return "";
  std::string out = "{";
  bool first = true;
  for (const auto& [k, v] : labels) {
    if (!first) out += ',';
    first = false;
    out += k + "=\"" + escape_label_value(v) + "\"";
  }
  if (!extra_name.empty()) {
    if (!first) out += ',';
    out += extra_name + "=\"" + extra_value + "\"";
  }
  return out + "}";
}

}  // namespace

std::string format_metric_value(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  if (value == std::floor(value) && std::fabs(value) < 1e15) {
    return std::to_string(static_cast<long long>(value));
  }
  char buf[40];
  const auto result = std::to_chars(buf, buf + sizeof buf, value, std::chars_format::general);
  return std::string(buf, result.ptr);
}

void Counter::add(double amount) noexcept {
  if (amount > 0) atomic_add(m_value, amount);
}
double Counter::value() const noexcept {
  return m_value.load(std::memory_order_relaxed);
}

void Gauge::set(double value) noexcept {
  m_value.store(value, std::memory_order_relaxed);
}
void Gauge::add(double amount) noexcept {
  atomic_add(m_value, amount);
}
double Gauge::value() const noexcept {
  return m_value.load(std::memory_order_relaxed);
}

Histogram::Histogram(std::vector<double> bounds)
    : m_bounds(std::move(bounds)),
      m_buckets(std::make_unique<std::atomic<std::uint64_t>[]>(m_bounds.size() + 1)) {
  for (std::size_t i = 1; i < m_bounds.size(); ++i) {
    if (!(m_bounds[i - 1] < m_bounds[i])) {
      throw std::invalid_argument("histogram bounds must be strictly increasing");
    }
  }
  for (std::size_t i = 0; i <= m_bounds.size(); ++i) m_buckets[i].store(0);
}

void Histogram::observe(double value) noexcept {
  const auto it = std::lower_bound(m_bounds.begin(), m_bounds.end(), value);
  m_buckets[static_cast<std::size_t>(it - m_bounds.begin())].fetch_add(1,
                                                                       std::memory_order_relaxed);
  atomic_add(m_sum, value);
}

std::uint64_t Histogram::count() const noexcept {
  std::uint64_t total = 0;
  for (std::size_t i = 0; i <= m_bounds.size(); ++i) {
    total += m_buckets[i].load(std::memory_order_relaxed);
  }
  return total;
}

double Histogram::sum() const noexcept {
  return m_sum.load(std::memory_order_relaxed);
}

std::vector<std::uint64_t> Histogram::cumulative_counts() const {
  std::vector<std::uint64_t> out;
  std::uint64_t running = 0;
  for (std::size_t i = 0; i <= m_bounds.size(); ++i) {
    running += m_buckets[i].load(std::memory_order_relaxed);
    out.push_back(running);
  }
  return out;
}

const std::vector<double>& latency_buckets() {
  static const std::vector<double> bounds{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                          0.1,    0.25,  0.5,    1,     2.5,  5,     10};
  return bounds;
}

MetricsRegistry::Family& MetricsRegistry::family(const std::string& name, const std::string& help,
                                                 Type type, const MetricLabels& labels,
                                                 const std::vector<double>& bounds) {
  if (!valid_name(name, true)) throw std::invalid_argument("invalid metric name: " + name);
  for (const auto& [k, v] : labels) {
    if (!valid_name(k, false) || k == "le") {
      throw std::invalid_argument("invalid label name " + k + " of metric " + name);
    }
  }
  auto [it, inserted] = m_families.try_emplace(name, Family{type, help, bounds, {}, {}, {}});
  if (!inserted && (it->second.type != type || it->second.bounds != bounds)) {
    throw std::invalid_argument("metric " + name + " exists with another type or buckets");
  }
  return it->second;
}

Counter& MetricsRegistry::counter(const std::string& name, const std::string& help,
                                  const MetricLabels& labels) {
  std::lock_guard lock(m_mutex);
  auto& slot = family(name, help, Type::counter, labels, {}).counters[labels];
  if (!slot) slot = std::make_unique<Counter>();
  return *slot;
}

Gauge& MetricsRegistry::gauge(const std::string& name, const std::string& help,
                              const MetricLabels& labels) {
  std::lock_guard lock(m_mutex);
  auto& slot = family(name, help, Type::gauge, labels, {}).gauges[labels];
  if (!slot) slot = std::make_unique<Gauge>();
  return *slot;
}

Histogram& MetricsRegistry::histogram(const std::string& name, const std::string& help,
                                      const std::vector<double>& bounds,
                                      const MetricLabels& labels) {
  std::lock_guard lock(m_mutex);
  auto& slot = family(name, help, Type::histogram, labels, bounds).histograms[labels];
  if (!slot) slot = std::make_unique<Histogram>(bounds);
  return *slot;
}

std::string MetricsRegistry::render() const {
  std::lock_guard lock(m_mutex);
  std::string out;
  for (const auto& [name, f] : m_families) {
    static const char* type_names[] = {"counter", "gauge", "histogram"};
    out += "# HELP " + name + " " + escape_help(f.help) + "\n";
    out += "# TYPE " + name + " " + type_names[static_cast<int>(f.type)] + "\n";
    for (const auto& [labels, c] : f.counters) {
      out += name + label_text(labels) + " " + format_metric_value(c->value()) + "\n";
    }
    for (const auto& [labels, g] : f.gauges) {
      out += name + label_text(labels) + " " + format_metric_value(g->value()) + "\n";
    }
    for (const auto& [labels, h] : f.histograms) {
      const auto counts = h->cumulative_counts();
      for (std::size_t i = 0; i < counts.size(); ++i) {
        const std::string le = i < f.bounds.size() ? format_metric_value(f.bounds[i]) : "+Inf";
        out += name + "_bucket" + label_text(labels, "le", le) + " " + std::to_string(counts[i]) +
               "\n";
      }
      out += name + "_sum" + label_text(labels) + " " + format_metric_value(h->sum()) + "\n";
      out += name + "_count" + label_text(labels) + " " + std::to_string(counts.back()) + "\n";
    }
  }
  return out;
}

}  // namespace prefstore
