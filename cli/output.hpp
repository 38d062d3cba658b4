// Output helpers of the prefstore tool: aligned text tables and JSON strings.
#pragma once

#include <ostream>
#include <string>
#include <string_view>
#include <vector>

namespace prefstore::cli {

// A text table: a header row, then rows; columns padded to their widest cell (in code points).
class Table {
 public:
  explicit Table(std::vector<std::string> header) : m_rows{std::move(header)} {}
  void add(std::vector<std::string> row) { m_rows.push_back(std::move(row)); }
  void print(std::ostream& out) const;
  [[nodiscard]] bool empty() const noexcept { return m_rows.size() <= 1; }

 private:
  std::vector<std::vector<std::string>> m_rows;
};

// s as a JSON string literal, with quotes.
std::string json_string(std::string_view s);

}  // namespace prefstore::cli
