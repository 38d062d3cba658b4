// A calendar service's use of prefstore: define the preferences it needs (once, idempotently),
// write a user's choices from its settings page, and read them back with defaults when it
// schedules a meeting. Calendar events themselves stay in Google Calendar.
#include <prefstore/errors.hpp>
#include <prefstore/store.hpp>

#include <iostream>

int main() {
  try {
    prefstore::Store store;  // PREFSTORE_DATABASE_URL, else the local server; migrates on open
    const prefstore::Metadata setup{"calendar-service", "calendar-service", "startup", "", ""};

    if (!store.definition("calendar.default_meeting_minutes")) {
      prefstore::PreferenceDefinition minutes;
      minutes.key = "calendar.default_meeting_minutes";
      minutes.type = prefstore::ValueType::integer;
      minutes.default_value = std::int64_t{30};
      minutes.description = "Length of a new meeting, in minutes";
      minutes.constraints.min = 5;
      minutes.constraints.max = 480;
      (void)store.define(minutes, setup);
    }
    if (!store.definition("calendar.timezone")) {
      prefstore::PreferenceDefinition tz;
      tz.key = "calendar.timezone";
      tz.type = prefstore::ValueType::string;
      tz.default_value = std::string("UTC");
      tz.description = "IANA time zone of the user's calendar";
      (void)store.define(tz, setup);
    }

    // The settings page: Ada picks her time zone.
    const prefstore::Metadata web{"ada@example.com", "calendar-web", "settings page", "req-1", ""};
    (void)store.set("ada", "calendar.timezone", std::string("Europe/London"), web);

    // A bad value is refused with a message naming key, value and constraint.
    try {
      (void)store.set("ada", "calendar.default_meeting_minutes", std::int64_t{600}, web);
    } catch (const prefstore::ValidationError& e) {
      std::cout << "refused: " << e.what() << "\n";
    }

    // Scheduling a meeting: read everything, defaults included.
    for (const auto& [key, pref] : store.get_all("ada")) {
      std::cout << key << " = " << prefstore::format_value(pref.value)
                << (pref.is_default ? " (default)" : "") << "\n";
    }
    const auto tz = store.get("ada", "calendar.timezone");
    return tz && std::get<std::string>(*tz) == "Europe/London" ? 0 : 1;
  } catch (const prefstore::Error& e) {
    std::cerr << "calendar_service: " << e.what() << "\n";
    return 1;
  }
}
