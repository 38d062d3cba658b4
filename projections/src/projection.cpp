#include "prefstore/projections/projection.hpp"

#include "prefstore/errors.hpp"

namespace prefstore::projections {

ProjectionContext::ProjectionContext(storage::UnitOfWork& uow,
                                     std::map<std::string, std::string> tables, bool distributed)
    : m_uow(uow), m_tables(tables.begin(), tables.end()), m_distributed(distributed) {}

const std::string& ProjectionContext::table(std::string_view name) const {
  auto it = m_tables.find(name);
  if (it == m_tables.end()) {
    throw UsageError("a projection used table \"" + std::string(name) +
                     "\", which its tables() does not declare");
  }
  return it->second;
}

std::vector<storage::SqlRow> ProjectionContext::exec(std::string_view sql_template,
                                                     const std::vector<storage::SqlValue>& params) {
  std::string sql;
  sql.reserve(sql_template.size() + 64);
  for (std::size_t i = 0; i < sql_template.size(); ++i) {
    if (sql_template[i] == '{') {
      const std::size_t end = sql_template.find('}', i);
      if (end == std::string_view::npos) throw UsageError("unterminated {table} in projection SQL");
      sql += table(sql_template.substr(i + 1, end - i - 1));
      i = end;
    } else {
      sql += sql_template[i];
    }
  }
  return m_uow.exec(sql, params);
}

}  // namespace prefstore::projections
