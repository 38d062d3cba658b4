#include "prefstore/projections/registry.hpp"

#include "prefstore/projections/current_state.hpp"
#include "prefstore/projections/snapshot_writer.hpp"
#include "prefstore/projections/value_counts.hpp"

namespace prefstore::projections {

std::vector<std::shared_ptr<Projection>> default_projections() {
  return {std::make_shared<ValueCountsProjection>(), std::make_shared<SnapshotProjection>()};
}

std::vector<std::shared_ptr<Projection>> rebuildable_projections() {
  std::vector<std::shared_ptr<Projection>> all;
  for (auto& p : default_projections()) {
    if (!p->tables().empty()) all.push_back(p);  // the snapshot cache has nothing to rebuild
  }
  all.push_back(std::make_shared<CurrentStateProjection>());
  return all;
}

std::shared_ptr<Projection> find_projection(std::string_view name) {
  for (auto& p : rebuildable_projections()) {
    if (p->name() == name) return p;
  }
  return nullptr;
}

}  // namespace prefstore::projections
