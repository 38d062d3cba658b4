#include "erasure.hpp"

#include <cstdlib>
#include <iostream>

#include "output.hpp"

namespace prefstore::cli {

void EraseCommand::add_to(CLI::App& app) {
  m_erase = app.add_subcommand(
      "erase",
      "Erase a user (right to erasure): remove their events, snapshots and preferences, and "
      "record who, when, why, how many events and the chain head in the stream $audit. Runs "
      "as prefstore_owner");
  m_erase->add_option("user", m_user, "The user to erase")->required();
  m_erase->add_option("--reason", m_reason, "Why (e.g. the erasure request's id)")->required();
  m_erase->add_option("--actor", m_actor,
                      "Who asks for the erasure (default: $PREFSTORE_ACTOR, else $USER)");
  m_erase->add_option("--event-id", m_event_id,
                      "UUID of the erasure record (a retry with the same id erases once)");
  m_erase->add_flag("--json", m_json, "Print the erasure record as JSON");
}

std::optional<int> EraseCommand::run() {
  if (m_erase == nullptr || !m_erase->parsed()) return std::nullopt;
  storage::EraseOptions options;
  options.actor = m_actor;
  if (options.actor.empty()) {
    if (const char* a = std::getenv("PREFSTORE_ACTOR")) {
      options.actor = a;
    } else if (const char* u = std::getenv("USER")) {
      options.actor = u;
    }
  }
  options.event_id = m_event_id;
  Store store(store_options(true, Task::administer));
  const storage::ErasureRecord r = store.erase_user(m_user, m_reason, options);
  if (m_json) {
    std::cout << "{\"user\":" << json_string(r.stream_id) << ",\"events\":" << r.events
              << ",\"stream_version\":" << r.stream_version
              << ",\"first_position\":" << r.first_position
              << ",\"last_position\":" << r.last_position
              << ",\"chain_head\":" << json_string(r.chain_head)
              << ",\"audit_position\":" << r.audit_position
              << ",\"event_id\":" << json_string(r.event_id)
              << ",\"already_erased\":" << (r.already_erased ? "true" : "false") << "}\n";
  } else {
    std::cout << (r.already_erased ? "already erased " : "erased ") << r.stream_id << ": "
              << r.events << " events (up to version " << r.stream_version << ", positions "
              << r.first_position << "-" << r.last_position << "), chain head " << r.chain_head
              << "; recorded at position " << r.audit_position << " of $audit (event id "
              << r.event_id << ")\n";
  }
  return kOk;
}

}  // namespace prefstore::cli
