// Projection: a named component that folds events into its own tables (a read model), and the
// context through which it writes them.
//
// A projection runs asynchronously (ProjectionRunner catches it up from its checkpoint, writing
// its tables and the checkpoint in one transaction) and can be rebuilt from the start of the log
// into shadow tables (rebuild_projection). It must be deterministic: the same events in the same
// order give the same tables. Thread-safety: a Projection is called from one thread at a time.
#pragma once

#include <map>
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
  // table, or its shadow during a rebuild). Requires: uow outlives the context.
  ProjectionContext(storage::UnitOfWork& uow, std::map<std::string, std::string> tables);

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
};

}  // namespace prefstore::projections
