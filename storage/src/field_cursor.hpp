// Storage-internal: reads result rows and their fields in column order without copying
// libpqxx handles. libpqxx 6.4 hands out every row (*it, range-for) and every field (row[i],
// *it) as a copy that holds the whole result (two shared_ptrs: four atomic operations each);
// an iterator read through -> is not copied. On get_all's 20 rows of 7 fields the copies cost
// as much as decoding the values (docs/performance-findings.md).
#pragma once

#include <pqxx/pqxx>
#include <string>
#include <string_view>

namespace prefstore::storage::detail {

// Calls visit(const pqxx::row&) for each row of r, in order, without copying the rows.
template <class Visit>
void for_each_row(const pqxx::result& r, Visit&& visit) {
  const auto end = r.end();
  for (auto it = r.begin(); it != end; ++it) visit(*it.operator->());
}

// The fields of one row, read front to back. Every read requires a field left: reading past
// the last one is a programming error (pqxx's out-of-range error on its conversion).
class FieldCursor {
 public:
  // Requires: row (and its result) outlives the cursor and the views it returns.
  explicit FieldCursor(const pqxx::row& row) : m_at(row.begin()) {}

  // The next field's text, without a copy (valid while the result lives). A null throws what
  // libpqxx's conversion of it to a string throws.
  std::string_view text() {
    const pqxx::field& f = *m_at.operator->();
    if (f.is_null()) (void)f.as<std::string>();
    const std::string_view v{f.c_str(), f.size()};
    ++m_at;
    return v;
  }

  // The next field converted by libpqxx (a null or a malformed value throws its error).
  template <class T>
  T as() {
    T v = m_at->as<T>();
    ++m_at;
    return v;
  }

  // Moves past the next field.
  void skip() { ++m_at; }

  // The next field itself (valid until the cursor moves), for decoders that take a field.
  [[nodiscard]] const pqxx::field& field() const { return *m_at.operator->(); }

 private:
  pqxx::const_row_iterator m_at;
};

}  // namespace prefstore::storage::detail
