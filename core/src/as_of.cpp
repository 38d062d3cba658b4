#include "prefstore/as_of.hpp"

namespace prefstore {

bool AsOf::includes(const RecordedEvent& event) const noexcept {
  switch (kind) {
    case Kind::latest:
      return true;
    case Kind::time:
      return event.recorded_at <= time;
    case Kind::position:
      return event.global_position <= number;
    case Kind::version:
      return event.stream_version <= number;
  }
  return false;
}

std::string AsOf::describe() const {
  switch (kind) {
    case Kind::latest:
      return "now";
    case Kind::time:
      return format_timestamp(time);
    case Kind::position:
      return "position " + std::to_string(number);
    case Kind::version:
      return "version " + std::to_string(number);
  }
  return "?";
}

}  // namespace prefstore
