// The calendar assistant's definitions that the scale-out tests write.
#pragma once

#include "prefstore/definition.hpp"

namespace prefstore::scale_test {

// calendar.default_meeting_minutes: an int from 5 to 480, default 30.
inline PreferenceDefinition meeting_length() {
  PreferenceDefinition d;
  d.key = "calendar.default_meeting_minutes";
  d.type = ValueType::integer;
  d.default_value = std::int64_t{30};
  d.constraints.min = 5;
  d.constraints.max = 480;
  return d;
}

// calendar.timezone: a string, default UTC.
inline PreferenceDefinition timezone() {
  PreferenceDefinition d;
  d.key = "calendar.timezone";
  d.type = ValueType::string;
  d.default_value = std::string("UTC");
  return d;
}

}  // namespace prefstore::scale_test
