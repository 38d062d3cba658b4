#include "prefstore/projections/registry.hpp"

#include "prefstore/projections/value_counts.hpp"

namespace prefstore::projections {

std::vector<std::shared_ptr<Projection>> default_projections() {
  return {std::make_shared<ValueCountsProjection>()};
}

std::shared_ptr<Projection> find_projection(std::string_view name) {
  for (auto& p : default_projections()) {
    if (p->name() == name) return p;
  }
  return nullptr;
}

}  // namespace prefstore::projections
