#include "prefstore/timestamp.hpp"

#include <array>
#include <cstdio>

namespace prefstore {
namespace {

// A cursor over the text being parsed; every read checks the bounds.
class Scanner {
 public:
  explicit Scanner(std::string_view text) : m_text(text) {}

  [[nodiscard]] bool done() const noexcept { return m_pos == m_text.size(); }
  [[nodiscard]] char peek() const noexcept { return done() ? '\0' : m_text[m_pos]; }
  bool accept(char c) noexcept {
    if (peek() != c || done()) return false;
    ++m_pos;
    return true;
  }
  // Reads exactly count decimal digits.
  std::optional<int> digits(std::size_t count) noexcept {
    if (m_text.size() - m_pos < count) return std::nullopt;
    int value = 0;
    for (std::size_t k = 0; k < count; ++k) {
      const char c = m_text[m_pos + k];
      if (c < '0' || c > '9') return std::nullopt;
      value = value * 10 + (c - '0');
    }
    m_pos += count;
    return value;
  }
  // Reads one or more digits as microseconds (digits after the sixth are dropped).
  std::optional<int> fraction_micros() noexcept {
    int value = 0;
    std::size_t count = 0;
    while (!done() && peek() >= '0' && peek() <= '9') {
      if (count < 6) value = value * 10 + (peek() - '0');
      ++count;
      ++m_pos;
    }
    if (count == 0) return std::nullopt;
    for (; count < 6; ++count) value *= 10;
    return value;
  }

 private:
  std::string_view m_text;
  std::size_t m_pos = 0;
};

}  // namespace

std::string format_timestamp(Timestamp t) {
  using namespace std::chrono;
  const auto day = floor<days>(t);
  const year_month_day ymd{day};
  const hh_mm_ss<microseconds> time{t - day};
  std::array<char, 64> buffer{};
  const int length = std::snprintf(
      buffer.data(), buffer.size(), "%04d-%02u-%02uT%02d:%02d:%02d.%06dZ", int{ymd.year()},
      unsigned{ymd.month()}, unsigned{ymd.day()}, static_cast<int>(time.hours().count()),
      static_cast<int>(time.minutes().count()), static_cast<int>(time.seconds().count()),
      static_cast<int>(time.subseconds().count()));
  return std::string(buffer.data(), static_cast<std::size_t>(length));
}

std::optional<Timestamp> parse_timestamp(std::string_view text) {
  using namespace std::chrono;
  Scanner in(text);
  const auto y = in.digits(4);
  if (!y || !in.accept('-')) return std::nullopt;
  const auto mo = in.digits(2);
  if (!mo || !in.accept('-')) return std::nullopt;
  const auto d = in.digits(2);
  if (!d) return std::nullopt;
  const year_month_day date{year{*y}, month{static_cast<unsigned>(*mo)},
                            day{static_cast<unsigned>(*d)}};
  if (!date.ok()) return std::nullopt;
  Timestamp result{sys_days{date}};
  if (in.done()) return result;  // a date alone: its midnight UTC

  if (!in.accept('T') && !in.accept('t') && !in.accept(' ')) return std::nullopt;
  const auto h = in.digits(2);
  if (!h || !in.accept(':')) return std::nullopt;
  const auto mi = in.digits(2);
  if (!mi) return std::nullopt;
  int s = 0;
  int micros = 0;
  if (in.accept(':')) {
    const auto sec = in.digits(2);
    if (!sec) return std::nullopt;
    s = *sec;
    if (in.accept('.') || in.accept(',')) {
      const auto f = in.fraction_micros();
      if (!f) return std::nullopt;
      micros = *f;
    }
  }
  if (*h > 23 || *mi > 59 || s > 59) return std::nullopt;
  result += hours{*h} + minutes{*mi} + seconds{s} + microseconds{micros};

  // The zone: none (UTC), "Z", or an offset "+HH", "+HHMM", "+HH:MM" (also '-').
  if (in.accept('Z') || in.accept('z') || in.done()) {
    return in.done() ? std::optional<Timestamp>(result) : std::nullopt;
  }
  int sign = 0;
  if (in.accept('+')) {
    sign = 1;
  } else if (in.accept('-')) {
    sign = -1;
  } else {
    return std::nullopt;
  }
  const auto oh = in.digits(2);
  if (!oh) return std::nullopt;
  int om = 0;
  if (!in.done()) {
    const bool colon = in.accept(':');
    const auto m = in.digits(2);
    if (!m || (!colon && !in.done())) return std::nullopt;
    om = *m;
  }
  if (!in.done() || *oh > 23 || om > 59) return std::nullopt;
  // Local time = UTC + offset, so UTC = local time - offset.
  result -= sign * (hours{*oh} + minutes{om});
  return result;
}

std::int64_t to_unix_micros(Timestamp t) noexcept {
  return t.time_since_epoch().count();
}

Timestamp from_unix_micros(std::int64_t micros) noexcept {
  return Timestamp{std::chrono::microseconds{micros}};
}

}  // namespace prefstore
