#include "prefstore/snapshot_codec.hpp"

#include <cereal/archives/portable_binary.hpp>

#include <cmath>
#include <sstream>
#include <type_traits>

#include "prefstore/errors.hpp"
#include "text.hpp"

namespace prefstore {
namespace {

using Out = cereal::PortableBinaryOutputArchive;
using In = cereal::PortableBinaryInputArchive;

// What is wrong with the bytes; decode turns it into a CorruptDataError.
struct Problem {
  std::string what;
};

void save_string(Out& ar, std::string_view s) {
  ar(static_cast<std::uint64_t>(s.size()));
  ar(cereal::binary_data(s.data(), s.size()));
}

void save_value(Out& ar, const Value& value) {
  ar(static_cast<std::uint8_t>(value.index()));
  std::visit(
      [&](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, bool>) {
          ar(static_cast<std::uint8_t>(v ? 1 : 0));
        } else if constexpr (std::is_same_v<T, std::int64_t> || std::is_same_v<T, double>) {
          ar(v);
        } else if constexpr (std::is_same_v<T, std::string>) {
          save_string(ar, v);
        } else {
          ar(static_cast<std::uint64_t>(v.size()));
          for (const std::string& item : v) save_string(ar, item);
        }
      },
      value);
}

// Reads with bounds: every length is checked against the bytes that are left.
class Reader {
 public:
  explicit Reader(std::string_view bytes)
      : m_stream(std::string(bytes)), m_archive(m_stream), m_size(bytes.size()) {}

  template <class T>
  T number(const char* what) {
    T value{};
    if (left() < sizeof(T)) throw Problem{"truncated in " + std::string(what)};
    m_archive(value);
    return value;
  }

  std::uint64_t count(const char* what, std::size_t min_item_bytes) {
    const auto n = number<std::uint64_t>(what);
    if (n > left() / min_item_bytes) {
      throw Problem{std::string(what) + " of " + std::to_string(n) + " is longer than the data"};
    }
    return n;
  }

  std::string string(const char* what) {
    const auto n = count(what, 1);
    std::string s(n, '\0');
    if (n > 0) m_archive(cereal::binary_data(s.data(), n));
    if (!detail::is_valid_utf8(s)) throw Problem{std::string(what) + " is not valid UTF-8"};
    return s;
  }

  Value value(const std::string& key) {
    const auto type = number<std::uint8_t>("value type");
    switch (type) {
      case 0: {
        const auto b = number<std::uint8_t>("bool value");
        if (b > 1) throw Problem{"bool value of key " + detail::quote(key) + " is not 0 or 1"};
        return b == 1;
      }
      case 1:
        return number<std::int64_t>("int value");
      case 2: {
        const auto d = number<double>("double value");
        if (!std::isfinite(d)) {
          throw Problem{"double value of key " + detail::quote(key) + " is not finite"};
        }
        return d;
      }
      case 3:
        return string("string value");
      case 4: {
        const auto n = count("list length", sizeof(std::uint64_t));
        StringList items;
        items.reserve(n);
        for (std::uint64_t i = 0; i < n; ++i) items.push_back(string("list item"));
        return items;
      }
      default:
        throw Problem{"unknown value type " + std::to_string(type) + " for key " +
                      detail::quote(key)};
    }
  }

  [[nodiscard]] std::size_t left() {
    const auto at = m_stream.tellg();
    return at < 0 ? 0 : m_size - static_cast<std::size_t>(at);
  }

 private:
  std::istringstream m_stream;
  In m_archive;
  std::size_t m_size;
};

}  // namespace

std::string encode_snapshot_state(const PreferenceState& state) {
  std::ostringstream out;
  {
    Out ar(out);
    ar(static_cast<std::uint64_t>(state.size()));
    for (const auto& [key, entry] : state) {
      save_string(ar, key);
      save_value(ar, entry.value);
      ar(entry.version, to_unix_micros(entry.updated_at));
      save_string(ar, entry.updated_by);
      ar(entry.last_position);
    }
  }
  return std::move(out).str();
}

PreferenceState decode_snapshot_state(std::string_view bytes, int format_version) {
  if (format_version != kSnapshotFormatVersion) {
    throw CorruptDataError("snapshot format version " + std::to_string(format_version) +
                           " is unknown to this build (it reads version " +
                           std::to_string(kSnapshotFormatVersion) + ")");
  }
  try {
    // The portable archive starts with one byte saying the writer's endianness.
    if (bytes.empty()) throw Problem{"no bytes"};
    if (bytes[0] != 0 && bytes[0] != 1) {
      throw Problem{"the first byte (the writer's byte order) is " +
                    std::to_string(static_cast<unsigned char>(bytes[0])) + ", not 0 or 1"};
    }
    Reader in(bytes);
    PreferenceState state;
    // Smallest entry: key length, type, bool, version, time, actor length, position.
    const auto entries = in.count("entry count", 8 + 1 + 1 + 8 + 8 + 8 + 8);
    for (std::uint64_t i = 0; i < entries; ++i) {
      std::string key = in.string("key");
      if (!state.empty() && key <= state.rbegin()->first) {
        throw Problem{"key " + detail::quote(key) + " is repeated or out of order"};
      }
      PreferenceEntry entry;
      entry.value = in.value(key);
      entry.version = in.number<std::int64_t>("version");
      entry.updated_at = from_unix_micros(in.number<std::int64_t>("updated_at"));
      entry.updated_by = in.string("updated_by");
      entry.last_position = in.number<std::int64_t>("last_position");
      state.emplace_hint(state.end(), std::move(key), std::move(entry));
    }
    if (in.left() != 0) throw Problem{std::to_string(in.left()) + " bytes left over at the end"};
    return state;
  } catch (const Problem& p) {
    throw CorruptDataError("snapshot state (format " + std::to_string(format_version) + ", " +
                           std::to_string(bytes.size()) + " bytes) is corrupt: " + p.what);
  } catch (const cereal::Exception& e) {
    throw CorruptDataError("snapshot state (format " + std::to_string(format_version) + ", " +
                           std::to_string(bytes.size()) + " bytes) is corrupt: " + e.what());
  }
}

}  // namespace prefstore
