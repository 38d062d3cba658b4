// Projection: a named component that folds events into its own tables (a read model), and the
// context through which it writes them.
//
// A projection runs asynchronously (ProjectionRunner catches it up from its checkpoint, writing
// its tables and the checkpoint in one transaction) and can be rebuilt from the start of the log
// into shadow tables (rebuild_projection). It must be deterministic: the same events in the same
// order give the same tables. Thread-safety: a Projection is called from one thread at a time.
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "prefstore/event.hpp"
#include "prefstore/storage/unit_of_work.hpp"

namespace prefstore::projections {

// The transaction a projection writes in, and the names of its tables in it.
class ProjectionContext {
 public:
  // tables: each of the projection's table names mapped to the qualified name to use (the live
  // table, or its shadow during a rebuild). distributed: the tables are Citus tables distributed
  // by user (distributed mode). Requires: uow outlives the context.
  ProjectionContext(storage::UnitOfWork& uow, std::map<std::string, std::string> tables,
                    bool distributed = false);

  // True in distributed mode: a statement over many users then runs on every shard, so a
  // projection does well to keep each statement to the users of one shard.
  [[nodiscard]] bool distributed() const noexcept { return m_distributed; }

  // The qualified name to use for one of the projection's tables. Throws UsageError for a name
  // the projection did not declare.
  [[nodiscard]] const std::string& table(std::string_view name) const;

  // Runs sql in the transaction, where "{name}" stands for table(name). Values go in params.
  std::vector<storage::SqlRow> exec(std::string_view sql_template,
                                    const std::vector<storage::SqlValue>& params = {});

  // The transaction itself, for storage functions that take one (e.g. load_state).
  [[nodiscard]] storage::UnitOfWork& unit_of_work() noexcept { return m_uow; }

 private:
  storage::UnitOfWork& m_uow;
  std::map<std::string, std::string, std::less<>> m_tables;
  bool m_distributed = false;
};

// A projection's fold of a rebuild's first events in client memory (see
// Projection::rebuild_fold): the rebuild reads the log from its start into the fold, then the fold
// writes the result into the still empty shadow tables in bulk, instead of one transaction of
// table writes per batch. Thread-safety: called from one thread at a time.
class RebuildFold {
 public:
  virtual ~RebuildFold() = default;

  // Folds a batch of events, in commit-safe log order, continuing the batches added before (the
  // first starts at the beginning of the log). Honours every event as Projection::apply does.
  // Requires: flush has not run. Throws the projection's own error on an event it cannot fold;
  // the fold is then unusable (the rebuild stops, nothing of the fold is written).
  virtual void add(const std::vector<RecordedEvent>& batch) = 0;

  // True once the fold holds as many entries as its cap allows: the rebuild then adds no more,
  // flushes it, and applies the rest of the log with Projection::apply.
  [[nodiscard]] virtual bool full() const = 0;

  // Writes what was folded into the projection's tables through ctx: afterwards they hold what
  // Projection::apply of the same events would have left in empty tables. Requires: the tables
  // are empty; called once, after the last add. Throws what ctx.exec throws (the caller's
  // transaction is then unusable and rolls back).
  virtual void flush(ProjectionContext& ctx) = 0;
};

class Projection {
 public:
  virtual ~Projection() = default;

  // The projection's name in projection_checkpoints and on the command line. Persisted: never
  // change it once released. Grammar: see projection_name.hpp.
  [[nodiscard]] virtual std::string name() const = 0;

  // The tables it owns (unqualified names in schema prefstore). A rebuild shadows each of them.
  [[nodiscard]] virtual std::vector<std::string> tables() const = 0;

  // True for a read model that EventLog::append writes inline (in the append's transaction)
  // rather than a runner: a rebuild then holds the writers off while it swaps. Default false.
  [[nodiscard]] virtual bool is_inline() const { return false; }

  // Applies a batch of events, in commit-safe log order, through ctx. The batch holds the
  // events of every stream, prefstore's own included: a projection keeping rows per user must
  // delete them when it applies a StreamErased record naming that user (stream "$audit"; the
  // user's events are gone from the log by then, so a rebuild never sees them). Throwing rolls the
  // whole batch back; the runner then finds the failing event and stops there.
  virtual void apply(const std::vector<RecordedEvent>& batch, ProjectionContext& ctx) = 0;

  // For rebuild_projection: a new, empty fold in client memory that holds at most about
  // max_entries entries (what an entry is, and its size, is the projection's to document) before
  // full() turns true; or nullptr for none, the default: the rebuild then applies every batch.
  // Requires: max_entries >= 1. Throws std::bad_alloc only.
  [[nodiscard]] virtual std::unique_ptr<RebuildFold> rebuild_fold(std::size_t max_entries) const {
    (void)max_entries;
    return nullptr;
  }
};

}  // namespace prefstore::projections
