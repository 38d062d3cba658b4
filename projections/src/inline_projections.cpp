#include "prefstore/projections/inline_projections.hpp"

#include "prefstore/projections/runner.hpp"

namespace prefstore::projections {

storage::InlineHook inline_hook(std::vector<std::shared_ptr<Projection>> projections) {
  return [projections = std::move(projections)](storage::UnitOfWork& uow,
                                                const std::vector<RecordedEvent>& events) {
    for (const auto& p : projections) {
      ProjectionContext ctx(uow, live_tables(*p));
      p->apply(events, ctx);
    }
  };
}

}  // namespace prefstore::projections
