#include "prefstore/storage/retention.hpp"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "prefstore/errors.hpp"
#include "prefstore/event.hpp"
#include "prefstore/metadata.hpp"
#include "prefstore/preference_key.hpp"
#include "prefstore/storage/snapshots.hpp"
#include "prefstore/storage/unit_of_work.hpp"

namespace prefstore::storage {
namespace {

constexpr std::size_t kMaxSkippedListed = 1000;

constexpr const char* kFunctionSignature =
    "prefstore.compact_stream(text,bigint,jsonb,uuid,timestamptz,text,text,uuid)";

// Is the function there, may the current role execute it, and who is that role.
constexpr const char* kPrivilegeSql =
    "SELECT to_regprocedure($1) IS NOT NULL, CASE WHEN to_regprocedure($1) IS NULL THEN false "
    "ELSE has_function_privilege(to_regprocedure($1), 'EXECUTE') END, current_user::text, "
    "(extract(epoch FROM clock_timestamp()) * 1000000)::bigint";

// One page of user streams after $1 (keyset), each with whether its second stored event was
// recorded before the cut-off $3 (only then is there anything to compact). $4: one stream only.
constexpr const char* kPageSql = R"sql(
SELECT s.stream_id,
       coalesce((SELECT e.recorded_at FROM prefstore.events e WHERE e.stream_id = s.stream_id
                 ORDER BY e.stream_version OFFSET 1 LIMIT 1) < $3::timestamptz, false)
FROM prefstore.streams s
WHERE s.stream_id > $1 AND s.version > 0 AND left(s.stream_id, 1) <> '$'
  AND ($4::text IS NULL OR s.stream_id = $4)
ORDER BY s.stream_id LIMIT $2::bigint
)sql";

constexpr const char* kLockStreamSql =
    "SELECT version FROM prefstore.streams WHERE stream_id = $1 FOR UPDATE";
constexpr const char* kReadStreamSql = "SELECT version FROM prefstore.streams WHERE stream_id = $1";

// The stream's first stored version, and its last event recorded before the cut-off $2.
constexpr const char* kPlanSql = R"sql(
SELECT (SELECT min(f.stream_version) FROM prefstore.events f WHERE f.stream_id = $1),
       v.stream_version, v.global_position,
       (extract(epoch FROM v.recorded_at) * 1000000)::bigint, encode(v.chain_hash, 'hex')
FROM (SELECT 1) AS one
LEFT JOIN LATERAL (SELECT e.stream_version, e.global_position, e.recorded_at, e.chain_hash
                   FROM prefstore.events e
                   WHERE e.stream_id = $1 AND e.recorded_at < $2::timestamptz
                   ORDER BY e.stream_version DESC LIMIT 1) AS v ON true
)sql";

// Waits for projections inside a batch (a runner holds its checkpoint row FOR UPDATE while it
// reads and applies events); runners skip rows locked here and try again later.
constexpr const char* kHoldCheckpointsSql =
    "SELECT projection_name FROM prefstore.projection_checkpoints ORDER BY projection_name "
    "FOR SHARE";

// Projections that have read some but not all of the stream's events up to $2: their
// checkpoint (transaction_id, global_position) is at or past the first of those events in
// commit-safe order, and before the last. One that has read none of them reads the baseline in
// their place later (it keeps event V's pair), which gives the same state.
constexpr const char* kLaggingSql = R"sql(
WITH ev AS (SELECT transaction_id, global_position FROM prefstore.events
            WHERE stream_id = $1 AND stream_version <= $2::bigint),
lo AS (SELECT transaction_id AS t, global_position AS p FROM ev ORDER BY 1, 2 LIMIT 1),
hi AS (SELECT transaction_id AS t, global_position AS p FROM ev ORDER BY 1 DESC, 2 DESC LIMIT 1)
SELECT c.projection_name, c.last_position, hi.p
FROM prefstore.projection_checkpoints c, lo, hi
WHERE (c.last_transaction_id, c.last_position) >= (lo.t, lo.p)
  AND (c.last_transaction_id, c.last_position) < (hi.t, hi.p)
ORDER BY c.projection_name
)sql";

constexpr const char* kCompactSql = R"sql(
SELECT audit_position, events, first_version, encode(chain_head, 'hex'), baseline_position,
       already_compacted
FROM prefstore.compact_stream($1, $2::bigint, $3::jsonb, $4::uuid, $5::timestamptz, $6, $7,
                              $8::uuid)
)sql";

std::int64_t to_int(const SqlValue& v) {
  return std::stoll(v.value());
}

bool blank(const std::string& s) {
  return s.find_first_not_of(" \t\r\n") == std::string::npos;
}

// The outcome of one stream; std::nullopt when there was nothing to compact.
using Outcome = std::optional<CompactedStream>;

CompactedStream skipped(const std::string& stream, std::string reason) {
  CompactedStream out;
  out.stream_id = stream;
  out.skipped_reason = std::move(reason);
  return out;
}

// Plans and (unless dry_run) compacts one stream in one transaction.
Outcome compact_one(ConnectionPool& pool, const std::string& stream, Timestamp cutoff,
                    const CompactOptions& options) {
  const std::string cutoff_text = format_timestamp(cutoff);
  UnitOfWork uow(pool);
  (void)uow.exec("SELECT set_config('lock_timeout', $1, true)",
                 {std::to_string(options.lock_timeout.count()) + "ms"});
  if (uow.exec(options.dry_run ? kReadStreamSql : kLockStreamSql, {stream}).empty()) {
    return std::nullopt;  // erased since the page was read
  }
  const auto plan = uow.exec(kPlanSql, {stream, cutoff_text}).at(0);
  if (!plan[0] || !plan[1]) return std::nullopt;
  const std::int64_t first = to_int(plan[0]);
  const std::int64_t up_to = to_int(plan[1]);
  if (up_to <= first) return std::nullopt;  // one old event, or the baseline alone

  CompactedStream out;
  out.stream_id = stream;
  out.first_version = first;
  out.up_to_version = up_to;
  out.events = up_to - first + 1;
  out.up_to_recorded_at = from_unix_micros(to_int(plan[3]));
  out.chain_head = plan[4].value();

  if (!options.dry_run) (void)uow.exec(kHoldCheckpointsSql);
  const auto lagging = uow.exec(kLaggingSql, {stream, std::to_string(up_to)});
  if (!lagging.empty()) {
    std::string names;
    for (const SqlRow& row : lagging) {
      if (!names.empty()) names += ", ";
      names += row[0].value() + " (at position " + row[1].value() + ")";
    }
    return skipped(stream, "projection " + names + " has read only part of versions " +
                               std::to_string(first) + " to " + std::to_string(up_to) +
                               " (up to position " + lagging[0][2].value() +
                               "); catch it up (prefstore projections catch-up) and run again");
  }

  StreamState state;
  try {
    state = load_state(uow, stream, AsOf::at_version(up_to));
  } catch (const CorruptDataError& e) {
    return skipped(stream, std::string("an event up to version ") + std::to_string(up_to) +
                               " cannot be read: " + e.what());
  }
  if (state.version != up_to) {
    throw CorruptDataError("retention: the fold of stream " + stream + " up to version " +
                           std::to_string(up_to) + " ended at version " +
                           std::to_string(state.version));
  }
  PreferencesBaseline baseline;
  baseline.chain_head = out.chain_head;
  baseline.compacted_events = out.events;
  for (const auto& [key, entry] : state.state) {
    baseline.preferences.push_back(PreferenceSet{key, entry.value});
  }
  out.preferences = static_cast<std::int64_t>(baseline.preferences.size());
  out.compacted = true;
  if (options.dry_run) return out;  // the unit of work rolls back

  const EncodedEvent encoded = encode(baseline);
  const auto result =
      uow.exec(kCompactSql, {stream, std::to_string(up_to), encoded.payload_json, new_event_id(),
                             cutoff_text, options.reason, options.actor, new_event_id()})
          .at(0);
  out.audit_position = to_int(result[0]);
  uow.commit();
  return out;
}

Timestamp checked_cutoff(const RetentionPolicy& policy, Timestamp now) {
  if (policy.older_than.has_value() == policy.before.has_value()) {
    throw ValidationError(
        "retention needs exactly one cut-off: an age (older_than) or a moment (before)");
  }
  if (policy.older_than) {
    if (policy.older_than->count() < 0) {
      throw ValidationError("retention: the age must not be negative (got " +
                            std::to_string(policy.older_than->count()) + " microseconds)");
    }
    return now - *policy.older_than;
  }
  if (*policy.before > now) {
    throw ValidationError("retention: the cut-off " + format_timestamp(*policy.before) +
                          " is later than the database clock (" + format_timestamp(now) +
                          "); give a moment in the past");
  }
  return *policy.before;
}

}  // namespace

CompactReport compact_streams(ConnectionPool& pool, const CompactOptions& options) {
  if (options.batch_size == 0) throw UsageError("compact: batch_size must be at least 1");
  if (blank(options.reason)) {
    throw ValidationError("retention needs a reason: it is recorded with every compaction");
  }
  validate_metadata(Metadata{options.actor, "", options.reason, "", ""});
  if (options.user) validate_user_id(*options.user);

  CompactReport report;
  report.dry_run = options.dry_run;
  {
    UnitOfWork uow(pool);
    const auto row = uow.exec(kPrivilegeSql, {std::string(kFunctionSignature)}).at(0);
    if (row[0] != "t") {
      throw MigrationError(
          "retention needs prefstore.compact_stream() (migration 0006), which this database does "
          "not have: run prefstore migrate");
    }
    if (!options.dry_run && row[1] != "t") {
      throw PermissionError("retention: role " + row[2].value() +
                                " may not execute prefstore.compact_stream(); compact as a member "
                                "of prefstore_owner (StoreOptions::pool.role = "
                                "\"prefstore_owner\")",
                            "42501");
    }
    report.cutoff = checked_cutoff(options.policy, from_unix_micros(to_int(row[3])));
  }
  const std::string cutoff_text = format_timestamp(report.cutoff);

  const auto record = [&](const CompactedStream& s) {
    if (s.compacted) {
      ++report.streams_compacted;
      report.events_removed += s.events;
    } else {
      ++report.streams_skipped;
      if (report.skipped.size() < kMaxSkippedListed) report.skipped.push_back(s);
    }
    if (options.on_stream) options.on_stream(s);
  };

  std::string after;
  for (;;) {
    std::vector<std::pair<std::string, bool>> page;
    {
      UnitOfWork uow(pool);
      for (const SqlRow& row : uow.exec(
               kPageSql, {after, std::to_string(options.batch_size), cutoff_text, options.user})) {
        page.emplace_back(row[0].value(), row[1] == "t");
      }
    }
    if (page.empty()) break;
    for (const auto& [stream, candidate] : page) {
      ++report.streams_examined;
      if (candidate) {
        Outcome outcome;
        for (int attempt = 1;; ++attempt) {
          try {
            outcome = compact_one(pool, stream, report.cutoff, options);
            break;
          } catch (const CommitInDoubtError&) {
            // Look again: a compaction that committed left the baseline first, so the second
            // look finds nothing to do; one that did not is done now.
            if (attempt >= 2) throw;
          } catch (const ContentionError& e) {
            outcome = skipped(stream, std::string("busy (") + e.what() + "); run again later");
            break;
          } catch (const ValidationError& e) {
            outcome = skipped(stream, e.what());
            break;
          } catch (const ConflictError& e) {
            outcome = skipped(stream, e.what());
            break;
          } catch (const CorruptDataError& e) {
            outcome = skipped(stream, e.what());
            break;
          } catch (const DatabaseError& e) {
            outcome = skipped(stream, e.what());
            break;
          }
        }
        if (outcome) record(*outcome);
      }
      if (options.progress && report.streams_examined % 100 == 0) options.progress(report);
    }
    if (options.user) break;
    after = page.back().first;
  }
  if (options.progress) options.progress(report);
  return report;
}

}  // namespace prefstore::storage
