// Issue 6 (bad input): hostile text in every free-form field (user ids, string values and list
// items, every metadata field) round-trips exactly through the Store and never changes a query:
// quotes, SQL fragments, placeholders, backslashes, bidi controls, emoji and random Unicode.
#include <gtest/gtest.h>
#include <rapidcheck.h>

#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "prefstore/errors.hpp"
#include "prefstore/preference_key.hpp"
#include "prefstore/store.hpp"
#include "property.hpp"
#include "test_cluster.hpp"
#include "unicode.hpp"

namespace prefstore {
namespace {

using prefstore::testing::check_property;
using prefstore::testing::TestCluster;
using prefstore::testing::utf8;

const std::vector<std::string> kHostile = {"'",
                                           "\"",
                                           "\\",
                                           "''",
                                           "\\'",
                                           "'; DROP TABLE prefstore.events; --",
                                           "\" OR 1=1 --",
                                           "$1",
                                           "$2::text",
                                           "%s",
                                           "%n",
                                           "{preferences_current}",
                                           "{}",
                                           "[]",
                                           "null",
                                           "NULL",
                                           "\\x00",
                                           "\\u0000",
                                           "E'\\n'",
                                           "\t",
                                           "\n",
                                           "\r\n",
                                           " ",
                                           "\u202e",
                                           "\u200b",
                                           "🙂",
                                           "Ω",
                                           "e\u0301",
                                           "𝕏",
                                           "<script>",
                                           "?",
                                           ":name",
                                           "@p",
                                           "--",
                                           "/*",
                                           "*/",
                                           ";"};

// Text for a field: pieces of hostile text and random code points (no NUL, valid UTF-8; the
// control characters only where `controls` says they are allowed).
rc::Gen<std::string> hostile_text(bool controls) {
  return rc::gen::map(rc::gen::container<std::vector<std::string>>(rc::gen::oneOf(
                          rc::gen::elementOf(kHostile),
                          rc::gen::map(rc::gen::inRange<std::uint32_t>(0x20, 0x2FFF),
                                       [](std::uint32_t cp) { return utf8(cp); }),
                          rc::gen::map(rc::gen::inRange<std::uint32_t>(0x1F300, 0x1F6FF),
                                       [](std::uint32_t cp) { return utf8(cp); }))),
                      [controls](std::vector<std::string> pieces) {
                        std::string out;
                        for (const auto& p : pieces) {
                          bool has_control = false;
                          for (const unsigned char c : p)
                            has_control = has_control || c < 0x20 || c == 0x7F;
                          if (has_control && !controls) continue;
                          out += p;
                        }
                        return out;
                      });
}

TEST(InputSafety, HostileTextInEveryFieldRoundTripsExactly) {
  StoreOptions options;
  options.database_url = TestCluster::instance().fresh_database();
  options.strict = false;
  Store store(options);
  pqxx::connection raw(*options.database_url);
  std::int64_t writes = 0;
  check_property(
      [&] {
        std::string user = "u:" + *hostile_text(false);
        // User ids: at most 200 characters; counted in code points, so cut by bytes safely.
        while (!user.empty() && user.size() > 180) user.pop_back();
        while (!user.empty() && (static_cast<unsigned char>(user.back()) & 0xC0) == 0x80) {
          user.pop_back();
        }
        if (!user.empty() && (static_cast<unsigned char>(user.back()) & 0x80) != 0) {
          user.pop_back();
        }
        const std::string text = *hostile_text(true);
        const StringList items = *rc::gen::container<StringList>(hostile_text(true));
        Metadata m;
        m.actor = *hostile_text(true);
        m.source = *hostile_text(true);
        m.reason = *hostile_text(true);
        m.correlation_id = *hostile_text(true);
        m.causation_id = *hostile_text(true);
        for (std::string* f :
             {&m.actor, &m.source, &m.reason, &m.correlation_id, &m.causation_id}) {
          if (f->size() > kMaxMetadataFieldLength) f->clear();
        }
        try {
          validate_user_id(user);
        } catch (const ValidationError&) {
          RC_DISCARD("not a valid user id");
        }
        const auto before = store.version(user);
        (void)store.set(user, "profile.note", Value(text), m);
        (void)store.set(user, "profile.tags", Value(items), m);
        writes += 2;
        RC_ASSERT(store.get(user, "profile.note") == std::optional<Value>(Value(text)));
        RC_ASSERT(store.get(user, "profile.tags") == std::optional<Value>(Value(items)));
        const auto events = store.history(user, 2, before);
        RC_ASSERT(events.size() == 2u);
        for (const auto& e : events) {
          RC_ASSERT(e.stream_id == user);
          RC_ASSERT(e.metadata == m);
        }
        RC_ASSERT(std::get<PreferenceSet>(events[0].data).value == Value(text));
        // Nothing else was touched: the log holds exactly the writes made.
        pqxx::nontransaction tx(raw);
        RC_ASSERT(
            tx.exec("SELECT count(*) FROM prefstore.events WHERE left(stream_id, 1) <> '$'")[0][0]
                .as<std::int64_t>() == writes);
      },
      60, 40);
}

}  // namespace
}  // namespace prefstore
