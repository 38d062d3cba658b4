#include "prefstore/storage/audit_query.hpp"

#include <algorithm>
#include <charconv>
#include <string_view>
#include <variant>

#include "error_translation.hpp"
#include "event_rows.hpp"
#include "pq_access.hpp"
#include "prefstore/errors.hpp"
#include "prefstore/metadata.hpp"
#include "prefstore/preference_key.hpp"

namespace prefstore::storage {
namespace {

// --- messages -------------------------------------------------------------------------------

// text in double quotes for a message: control characters, '"' and '\' escaped, long text cut.
std::string quoted(std::string_view text, std::size_t max_bytes = 80) {
  std::string out = "\"";
  static const char* hex = "0123456789abcdef";
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (i == max_bytes) {
      out += "...";
      break;
    }
    const auto c = static_cast<unsigned char>(text[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

[[noreturn]] void refuse(const std::string& what) {
  throw ValidationError("audit query: " + what);
}

bool valid_utf8(std::string_view s) noexcept {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = 0;
    std::uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      n = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n >= s.size()) return false;
    for (std::size_t k = 1; k <= n; ++k) {
      const auto d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += n + 1;
  }
  return true;
}

void check_text(const char* field, const std::optional<std::string>& value, std::size_t max_bytes) {
  if (!value) return;
  if (value->empty()) refuse(std::string(field) + " must not be empty (leave it unset instead)");
  if (value->size() > max_bytes) {
    refuse(std::string(field) + " " + quoted(*value) + " is " + std::to_string(value->size()) +
           " bytes long, more than the maximum " + std::to_string(max_bytes));
  }
  if (!valid_utf8(*value)) refuse(std::string(field) + " " + quoted(*value) + " is not UTF-8");
  if (value->find('\0') != std::string::npos) {
    refuse(std::string(field) + " " + quoted(*value) + " contains a NUL character");
  }
}

void check_user(const std::optional<std::string>& user) {
  check_text("user", user, 256 * 4);
  if (!user) return;
  std::size_t code_points = 0;
  for (std::size_t i = 0; i < user->size(); ++i) {
    const auto c = static_cast<unsigned char>((*user)[i]);
    if ((c & 0xC0) != 0x80) ++code_points;
    const bool c1 = c == 0xC2 && i + 1 < user->size() &&
                    static_cast<unsigned char>((*user)[i + 1]) >= 0x80 &&
                    static_cast<unsigned char>((*user)[i + 1]) <= 0x9F;
    if (c < 0x20 || c == 0x7f || c1) {
      refuse("user " + quoted(*user) + " contains a control character (no stream id has one)");
    }
  }
  if (code_points > 256) {
    refuse("user " + quoted(*user) + " is " + std::to_string(code_points) +
           " characters long; stream ids have at most 256");
  }
}

bool is_key_prefix(std::string_view p) noexcept {
  if (p.empty() || p.size() > kMaxKeyLength || p[0] < 'a' || p[0] > 'z') return false;
  return std::all_of(p.begin(), p.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.';
  });
}

// --- cursors ----------------------------------------------------------------------------------

// A place in a walk. newest_first: every matching event with a position >= `position` has been
// returned. oldest_first: every matching event with position <= `position` and transaction id
// below `horizon` has been returned, and none of a later transaction; when the last page stopped
// within the events of transactions in [horizon, frozen) that committed below `position`
// ("late" events), `late_after` is the position of the last of them returned and `frozen` the
// horizon that page used (the next page uses it again, so the set of late events stays fixed).
struct Cursor {
  AuditOrder order = AuditOrder::newest_first;
  std::int64_t position = 0;
  std::uint64_t horizon = 0;
  std::int64_t late_after = 0;
  std::uint64_t frozen = 0;
  std::uint64_t fingerprint = 0;
};

constexpr std::string_view kCursorTag = "a1";

// FNV-1a over every filter and the order (not the limit), each value length-prefixed.
std::uint64_t fingerprint(const AuditQuery& q) {
  std::string canon;
  const auto add = [&canon](const char* name, const std::optional<std::string>& v) {
    canon += name;
    if (v) canon += "=" + std::to_string(v->size()) + ":" + *v;
    canon += ';';
  };
  const auto add_number = [&add](const char* name, std::optional<std::int64_t> v) {
    add(name, v ? std::optional<std::string>(std::to_string(*v)) : std::nullopt);
  };
  add("user", q.user);
  add("key", q.key);
  add("key_prefix", q.key_prefix);
  add("actor", q.actor);
  add("source", q.source);
  add("event_type", q.event_type);
  add("correlation_id", q.correlation_id);
  add_number("from_time", q.from_time ? std::optional(to_unix_micros(*q.from_time)) : std::nullopt);
  add_number("to_time", q.to_time ? std::optional(to_unix_micros(*q.to_time)) : std::nullopt);
  add_number("from_position", q.from_position);
  add_number("to_position", q.to_position);
  canon += q.order == AuditOrder::newest_first ? "newest" : "oldest";
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : canon) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

constexpr char kBase64Url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

std::string base64url(std::string_view bytes) {
  std::string out;
  std::uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : bytes) {
    acc = (acc << 8) | c;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out += kBase64Url[(acc >> bits) & 63];
    }
  }
  if (bits > 0) out += kBase64Url[(acc << (6 - bits)) & 63];
  return out;
}

std::optional<std::string> from_base64url(std::string_view text) {
  std::string out;
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    const char* at = std::find(std::begin(kBase64Url), std::end(kBase64Url) - 1, c);
    if (at == std::end(kBase64Url) - 1) return std::nullopt;
    acc = (acc << 6) | static_cast<std::uint32_t>(at - kBase64Url);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xFF);
    }
  }
  return out;
}

std::string encode_cursor(const Cursor& c) {
  std::string raw(kCursorTag);
  char fp[17];
  std::snprintf(fp, sizeof fp, "%016llx", static_cast<unsigned long long>(c.fingerprint));
  if (c.order == AuditOrder::newest_first) {
    raw += ".n." + std::to_string(c.position) + "." + fp;
  } else {
    raw += ".o." + std::to_string(c.position) + "." + std::to_string(c.horizon) + "." +
           std::to_string(c.late_after) + "." + std::to_string(c.frozen) + "." + fp;
  }
  return base64url(raw);
}

template <class Int>
bool parse_number(std::string_view text, Int& out, int base = 10) {
  if (text.empty()) return false;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), out, base);
  return error == std::errc() && end == text.data() + text.size();
}

Cursor decode_cursor(const std::string& text, const AuditQuery& q) {
  const std::string problem = "cursor " + quoted(text, 60) + " is malformed: ";
  if (text.empty() || text.size() > 200) refuse(problem + "not a cursor of an audit query");
  const auto raw = from_base64url(text);
  if (!raw) refuse(problem + "not a cursor of an audit query");
  std::vector<std::string_view> parts;
  std::string_view rest(*raw);
  while (true) {
    const auto dot = rest.find('.');
    parts.push_back(rest.substr(0, dot));
    if (dot == std::string_view::npos) break;
    rest.remove_prefix(dot + 1);
  }
  if (parts.size() < 2 || parts[0] != kCursorTag) {
    refuse(problem + "not a cursor of an audit query");
  }
  Cursor c;
  bool ok = false;
  if (parts[1] == "n" && parts.size() == 4) {
    c.order = AuditOrder::newest_first;
    ok = parse_number(parts[2], c.position) && parse_number(parts[3], c.fingerprint, 16) &&
         c.position >= 1;
  } else if (parts[1] == "o" && parts.size() == 7) {
    c.order = AuditOrder::oldest_first;
    ok = parse_number(parts[2], c.position) && parse_number(parts[3], c.horizon) &&
         parse_number(parts[4], c.late_after) && parse_number(parts[5], c.frozen) &&
         parse_number(parts[6], c.fingerprint, 16) && c.position >= 0 && c.late_after >= 0 &&
         c.late_after <= c.position;
  }
  if (!ok) refuse(problem + "its fields do not parse");
  const auto name = [](AuditOrder o) {
    return o == AuditOrder::newest_first ? "newest-first" : "oldest-first";
  };
  if (c.order != q.order) {
    refuse("cursor " + quoted(text, 60) + " was made for a " + name(c.order) +
           " query, and this query is " + name(q.order) +
           ": page on in the order the cursor was made for");
  }
  if (c.fingerprint != fingerprint(q)) {
    refuse("cursor " + quoted(text, 60) +
           " was made for a query with other filters (user, key, key prefix, actor, source, event "
           "type, correlation id, time or position range): page on with the filters it was made "
           "with, or start again without a cursor");
  }
  return c;
}

// --- SQL --------------------------------------------------------------------------------------
// One statement per page, built from fixed fragments; every value is a $n parameter.
//
// How a page is found depends on the filters (docs/schema.md, "Audit queries"):
// - A driving filter: a correlation id or a user (their events are few, whatever else is asked),
//   or an indexed equality filter (actor, key, a rare event type, source) that is the only filter.
//   It is written as `expr = ANY(..)` with ORDER BY (expr, global_position), which only its own
//   index (expr, global_position) delivers in order: an ordered index scan that stops after LIMIT
//   rows, whatever the planner believes about where the matches lie (it assumes them spread
//   evenly over positions, which a key used only long ago is not). A driving key also reads the
//   events about several keys (restores), in a second branch served by
//   events_multi_key_global_position_idx.
// - Other combinations (several filters, a time range, a key prefix): the page first looks at
//   the next kWindow positions through the position index (recent or dense matches are there);
//   only when that window holds less than a page does a second branch run the whole query,
//   planned freely (bitmaps of several indexes, then a sort). With a time range or a key prefix
//   it is sorted on "global_position + 0", which keeps the planner from walking the position
//   index towards matches it believes spread over the whole log: an old, narrow time range
//   (times grow with positions), keys used only long ago. Past a window that held less than a
//   page, the matches are few or far: collecting them through the BRIN or key index and sorting
//   them is the safer bet.
// - No filter: the position index.
// Oldest-first pages read only events of finished transactions (below the horizon
// pg_snapshot_xmin(pg_current_snapshot())), plus the "late" branch: events of transactions in
// [cursor horizon, horizon) below the cursor's position (see Cursor).

constexpr const char* kWindow = "10000";

class Statement {
 public:
  std::string param(std::string value, const char* type) {
    m_params.push_back(std::move(value));
    return "$" + std::to_string(m_params.size()) + "::" + type;
  }
  [[nodiscard]] const std::vector<std::string>& params() const noexcept { return m_params; }

 private:
  std::vector<std::string> m_params;
};

std::string all_of(const std::vector<std::string>& conditions) {
  std::string out;
  for (const auto& c : conditions) out += (out.empty() ? "" : " AND ") + c;
  return out.empty() ? "true" : out;
}

std::vector<std::string> plus(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

struct Plan {
  std::vector<std::string> all;   // every filter, plain
  std::vector<std::string> rest;  // every filter but the driving one, plain
  std::string driver_expr;        // the driving filter's indexed expression; empty: none
  std::string driver_condition;   // its `expr = ANY(ARRAY[$n])` form (with partial predicate)
  std::string multi_key;          // key-driven: the condition of the restores' branch
  bool window = false;            // no driver but filters: window, then beyond it
  bool sort_all = false;          // a time range or key prefix: the rest is sorted, not walked
};

constexpr const char* kKeyExpr = "((e.payload ->> 'key') COLLATE \"C\")";
constexpr const char* kMultiKey = "NOT (e.payload ? 'key')";

// An indexed equality filter.
struct Equality {
  std::string plain;      // expr = $n (and the partial index's predicate)
  std::string expr;       // the indexed expression
  std::string any;        // expr = ANY(ARRAY[$n]) (and the predicate)
  std::string multi_key;  // key only: the restores' branch
  bool always_drives = false;
};

Plan plan_filters(const AuditQuery& q, Statement& st) {
  Plan p;
  std::vector<Equality> equalities;  // in driving order
  const auto metadata = [](const char* field) {
    return std::string("(e.metadata ->> '") + field + "')";
  };
  const auto add = [&](const std::optional<std::string>& value, const std::string& expr,
                       const std::string& predicate, bool always_drives) {
    if (!value) return;
    const std::string v = st.param(*value, "text");
    const std::string tail = predicate.empty() ? "" : " AND " + predicate;
    equalities.push_back({expr + " = " + v + tail, expr, expr + " = ANY(ARRAY[" + v + "])" + tail,
                          "", always_drives});
  };
  add(q.correlation_id, metadata("correlation_id"), metadata("correlation_id") + " <> ''", true);
  add(q.user, "e.stream_id", "", true);
  add(q.actor, metadata("actor"), metadata("actor") + " <> ''", false);
  if (q.key) {
    const std::string k = st.param(*q.key, "text");
    Equality e;
    e.multi_key = std::string(kMultiKey) + " AND " + k +
                  " = ANY(prefstore.event_keys(e.event_type, e.payload))";
    e.plain = "(" + std::string(kKeyExpr) + " = " + k + " OR (" + e.multi_key + "))";
    e.expr = kKeyExpr;
    e.any = std::string(kKeyExpr) + " = ANY(ARRAY[" + k + "])";
    equalities.push_back(e);
  }
  std::vector<std::string> others;  // filters without an index of their own in position order
  if (q.event_type) {
    // PreferenceSet is most of the log and left out of the type index: the position index finds
    // its events at almost every row.
    if (*q.event_type == "PreferenceSet") {
      others.push_back("e.event_type = " + st.param(*q.event_type, "text"));
    } else {
      add(q.event_type, "e.event_type", "e.event_type <> 'PreferenceSet'", false);
    }
  }
  add(q.source, metadata("source"), metadata("source") + " <> ''", false);
  if (q.key_prefix) {
    const std::string pre = st.param(*q.key_prefix, "text");
    std::string upper = *q.key_prefix;
    upper.back() = static_cast<char>(upper.back() + 1);  // prefix chars are ASCII below '~'
    const std::string up = st.param(upper, "text");
    others.push_back("((" + std::string(kKeyExpr) + " >= " + pre + " AND " + kKeyExpr + " < " + up +
                     ") OR (" + kMultiKey +
                     " AND EXISTS (SELECT FROM unnest(prefstore.event_keys(e.event_type, "
                     "e.payload)) AS k(key) WHERE starts_with(k.key, " +
                     pre + "))))");
  }
  if (q.from_time) {
    others.push_back("e.recorded_at >= " + st.param(format_timestamp(*q.from_time), "timestamptz"));
  }
  if (q.to_time) {
    others.push_back("e.recorded_at <= " + st.param(format_timestamp(*q.to_time), "timestamptz"));
  }
  const bool has_unordered = q.key_prefix || q.from_time || q.to_time;
  p.sort_all = has_unordered;
  const Equality* driver = nullptr;
  if (!equalities.empty() &&
      (equalities.front().always_drives || (equalities.size() == 1 && !has_unordered))) {
    driver = &equalities.front();
  }
  for (const auto& e : equalities) {
    p.all.push_back(e.plain);
    if (&e != driver) p.rest.push_back(e.plain);
  }
  p.all = plus(p.all, others);
  p.rest = plus(p.rest, others);
  if (driver != nullptr) {
    p.driver_expr = driver->expr;
    p.driver_condition = driver->any;
    p.multi_key = driver->multi_key;
  } else {
    p.window = equalities.size() + (has_unordered ? 1 : 0) > 0;
  }
  if (q.from_position) {
    const std::string c =
        "e.global_position >= " + st.param(std::to_string(*q.from_position), "bigint");
    p.all.push_back(c);
    p.rest.push_back(c);
  }
  if (q.to_position) {
    const std::string c =
        "e.global_position <= " + st.param(std::to_string(*q.to_position), "bigint");
    p.all.push_back(c);
    p.rest.push_back(c);
  }
  return p;
}

struct BuiltStatement {
  std::string sql;
  std::vector<std::string> params;
};

BuiltStatement build(const AuditQuery& q, const std::optional<Cursor>& cursor) {
  Statement st;
  const Plan p = plan_filters(q, st);
  const bool newest = q.order == AuditOrder::newest_first;
  const std::string limit = st.param(std::to_string(q.limit + 1), "bigint");
  const std::string dir = newest ? " DESC" : "";
  const std::string select =
      std::string("SELECT ") + detail::kEventColumns + " FROM prefstore.events AS e WHERE ";
  const auto branch = [&](const std::vector<std::string>& conditions, const std::string& order) {
    return "(" + select + all_of(conditions) + " ORDER BY " + order + " LIMIT " + limit + ")";
  };
  const std::string by_position = "e.global_position" + dir;

  // The keyset of the main part, and (oldest first) the horizon.
  std::vector<std::string> keyset;
  std::string horizon;
  std::string cursor_position;
  if (cursor && (newest || cursor->position > 0)) {
    cursor_position = st.param(std::to_string(cursor->position), "bigint");
  }
  if (newest) {
    if (!cursor_position.empty()) keyset.push_back("e.global_position < " + cursor_position);
  } else {
    horizon = cursor && cursor->frozen != 0 ? st.param(std::to_string(cursor->frozen), "xid8")
                                            : "pg_snapshot_xmin(pg_current_snapshot())";
    if (!cursor_position.empty()) keyset.push_back("e.global_position > " + cursor_position);
    keyset.push_back("e.transaction_id < " + horizon);
  }

  std::vector<std::string> branches;
  std::string with;
  if (p.window) {
    std::string edge;  // newest: the top (exclusive); oldest: the bottom (exclusive)
    if (newest) {
      edge = cursor_position.empty()
                 ? "(SELECT coalesce(max(global_position), 0) + 1 FROM prefstore.events)"
                 : cursor_position;
      if (q.to_position) {
        edge =
            "LEAST(" + edge + ", " + st.param(std::to_string(*q.to_position), "bigint") + " + 1)";
      }
    } else {
      edge = cursor_position.empty()
                 ? "(SELECT coalesce(min(global_position), 1) - 1 FROM prefstore.events)"
                 : cursor_position;
      if (q.from_position) {
        edge = "GREATEST(" + edge + ", " + st.param(std::to_string(*q.from_position), "bigint") +
               " - 1)";
      }
    }
    std::vector<std::string> window_keyset;
    if (newest) {
      window_keyset = {"e.global_position < " + edge,
                       "e.global_position >= " + edge + " - " + kWindow};
    } else {
      window_keyset = {"e.global_position > " + edge,
                       "e.global_position <= " + edge + " + " + kWindow,
                       "e.transaction_id < " + horizon};
    }
    // Either the window holds a page (and a row more), or the second branch, which covers the
    // window too, gives the page: exactly one of the two returns rows.
    with = "WITH w AS MATERIALIZED " + branch(plus(p.all, window_keyset), by_position) + " ";
    branches.push_back("(SELECT * FROM w WHERE (SELECT count(*) FROM w) >= " + limit + ")");
    branches.push_back("(SELECT f.* FROM " +
                       branch(plus(p.all, keyset),
                              (p.sort_all ? "e.global_position + 0" : "e.global_position") + dir) +
                       " AS f WHERE (SELECT count(*) FROM w) < " + limit + ")");
  } else if (!p.driver_expr.empty()) {
    std::vector<std::string> driven = plus(p.rest, keyset);
    driven.push_back(p.driver_condition);
    branches.push_back(branch(driven, p.driver_expr + dir + ", " + by_position));
    if (!p.multi_key.empty()) {
      std::vector<std::string> multi = plus(p.rest, keyset);
      multi.push_back(p.multi_key);
      branches.push_back(branch(multi, by_position));
    }
  } else {
    branches.push_back(branch(plus(p.all, keyset), by_position));
  }
  // Oldest first: events below the cursor whose transactions finished since the cursor's page.
  if (!newest && cursor && cursor->position > 0) {
    std::vector<std::string> late = p.all;
    late.push_back("e.transaction_id >= " + st.param(std::to_string(cursor->horizon), "xid8"));
    late.push_back("e.transaction_id < " + horizon);
    late.push_back("e.global_position <= " + cursor_position);
    if (cursor->late_after > 0) {
      late.push_back("e.global_position > " +
                     st.param(std::to_string(cursor->late_after), "bigint"));
    }
    branches.push_back(branch(late, "e.global_position"));
  }

  std::string body;
  for (const auto& b : branches) body += (body.empty() ? "" : " UNION ALL ") + b;
  const std::string page =
      "SELECT u.* FROM (" + body + ") AS u ORDER BY u.global_position" + dir + " LIMIT " + limit;
  BuiltStatement out;
  if (newest) {
    out.sql = with + page;
  } else {
    // Every row carries the horizon, and an empty page gives one row of NULL events with it,
    // so that the cursor knows it; rows and horizon come from one snapshot.
    out.sql = with + "SELECT p.*, h.horizon FROM (SELECT (" + horizon +
              ")::text AS horizon) AS h LEFT JOIN (" + page + ") AS p ON true";
  }
  out.params = st.params();
  return out;
}

std::optional<Cursor> checked(const AuditQuery& q) {
  validate_audit_query(q);
  if (!q.cursor) return std::nullopt;
  return decode_cursor(*q.cursor, q);
}

pqxx::result run(ConnectionPool& pool, const std::string& sql,
                 const std::vector<std::string>& params) {
  auto handle = pool.acquire();
  try {
    std::vector<const char*> raw;
    raw.reserve(params.size());
    for (const auto& v : params) raw.push_back(v.c_str());
    // No JIT: a page reads a few hundred rows at most, but the planned cost of a branch that
    // never runs (the second branch of a window) can pass jit_above_cost, and compiling the
    // plan would then take longer than running it.
    pqxx::work tx(detail::native(handle));
    tx.exec0("SET LOCAL jit = off");
    pqxx::result rows = tx.exec_params(sql, pqxx::prepare::make_dynamic_params(raw));
    tx.commit();
    return rows;
  } catch (...) {
    detail::rethrow_translated("running an audit query");
  }
}

}  // namespace

void validate_audit_query(const AuditQuery& q) {
  if (q.limit < 1 || q.limit > kMaxAuditLimit) {
    refuse("limit " + std::to_string(q.limit) + " is outside 1.." + std::to_string(kMaxAuditLimit));
  }
  check_user(q.user);
  if (q.key && q.key_prefix) {
    refuse("key " + quoted(*q.key) + " and key_prefix " + quoted(*q.key_prefix) +
           " exclude each other: give one of them");
  }
  if (q.key) {
    if (q.key->empty()) refuse("key must not be empty (leave it unset instead)");
    try {
      validate_key(*q.key);
    } catch (const ValidationError& e) {
      refuse(std::string("key: ") + e.what());
    }
  }
  if (q.key_prefix && !is_key_prefix(*q.key_prefix)) {
    refuse("key_prefix " + quoted(*q.key_prefix) +
           " is not the beginning of a key: a lowercase letter, then lowercase letters, digits, "
           "'_' or '.', at most " +
           std::to_string(kMaxKeyLength) + " characters");
  }
  check_text("actor", q.actor, kMaxMetadataFieldLength);
  check_text("source", q.source, kMaxMetadataFieldLength);
  check_text("correlation_id", q.correlation_id, kMaxMetadataFieldLength);
  if (q.event_type && current_schema_version(*q.event_type) == 0) {
    refuse("event_type " + quoted(*q.event_type) +
           " is not an event type of this build (e.g. PreferenceSet, PreferenceReset, "
           "PreferencesRestored, PreferenceDefined, PreferenceDeprecated)");
  }
  if (q.from_time && q.to_time && *q.from_time > *q.to_time) {
    refuse("from_time " + format_timestamp(*q.from_time) + " is after to_time " +
           format_timestamp(*q.to_time));
  }
  if (q.from_position && *q.from_position < 1) {
    refuse("from_position " + std::to_string(*q.from_position) + " is below 1");
  }
  if (q.to_position && *q.to_position < 1) {
    refuse("to_position " + std::to_string(*q.to_position) + " is below 1");
  }
  if (q.from_position && q.to_position && *q.from_position > *q.to_position) {
    refuse("from_position " + std::to_string(*q.from_position) + " is after to_position " +
           std::to_string(*q.to_position));
  }
  if (q.cursor) (void)decode_cursor(*q.cursor, q);
}

AuditPage query_audit(ConnectionPool& pool, const AuditQuery& query) {
  const std::optional<Cursor> cursor = checked(query);
  const BuiltStatement statement = build(query, cursor);
  const pqxx::result rows = run(pool, statement.sql, statement.params);

  const bool newest = query.order == AuditOrder::newest_first;
  AuditPage page;
  std::uint64_t horizon = 0;
  try {
    for (const auto& row : rows) {
      if (!newest) horizon = row[static_cast<int>(row.size()) - 1].as<std::uint64_t>();
      if (row[0].is_null()) continue;  // an empty oldest-first page: the horizon alone
      page.events.push_back(detail::decode_event_row(row));
    }
  } catch (const Error&) {
    throw;
  } catch (...) {
    detail::rethrow_translated("reading an audit query's rows");
  }
  std::sort(page.events.begin(), page.events.end(), [newest](const auto& a, const auto& b) {
    return newest ? a.global_position > b.global_position : a.global_position < b.global_position;
  });
  const bool more = static_cast<std::int64_t>(page.events.size()) > query.limit;
  if (more) page.events.resize(static_cast<std::size_t>(query.limit));

  Cursor next;
  next.order = query.order;
  next.fingerprint = fingerprint(query);
  if (newest) {
    if (more) {
      next.position = page.events.back().global_position;
      page.next_cursor = encode_cursor(next);
    }
    return page;
  }
  const Cursor base = cursor.value_or(Cursor{});
  next.position = base.position;
  next.horizon = horizon;
  if (!page.events.empty()) {
    const std::int64_t last = page.events.back().global_position;
    if (last > base.position) {
      next.position = last;  // past the late events: all of them were returned
    } else if (more) {
      next.horizon = base.horizon;  // within the late events: go on with the same set
      next.late_after = last;
      next.frozen = horizon;
    }
  }
  page.resume_cursor = encode_cursor(next);
  if (more) page.next_cursor = page.resume_cursor;
  return page;
}

std::string explain_audit(ConnectionPool& pool, const AuditQuery& query, ExplainMode mode) {
  const std::optional<Cursor> cursor = checked(query);
  const BuiltStatement statement = build(query, cursor);
  const std::string prefix =
      mode == ExplainMode::plan_json ? "EXPLAIN (FORMAT JSON) " : "EXPLAIN (ANALYZE, BUFFERS) ";
  const pqxx::result rows = run(pool, prefix + statement.sql, statement.params);
  std::string out;
  for (const auto& row : rows) out += row[0].as<std::string>() + "\n";
  return out;
}

std::vector<std::string> audit_event_keys(const EventData& event) {
  std::vector<std::string> keys;
  if (const auto* d = std::get_if<PreferenceDefined>(&event)) {
    keys.push_back(d->definition.key);
  } else if (const auto* dep = std::get_if<PreferenceDeprecated>(&event)) {
    keys.push_back(dep->key);
  } else {
    for (const auto& change : preference_changes(event)) keys.emplace_back(change.key);
  }
  return keys;
}

}  // namespace prefstore::storage
