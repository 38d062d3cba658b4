#include "verify.hpp"

#include <unistd.h>

#include <chrono>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "common.hpp"
#include "output.hpp"
#include "prefstore/store.hpp"
#include "prefstore/verify.hpp"

namespace prefstore::cli {
namespace {

std::string problem_json(const VerifyProblem& p) {
  std::ostringstream out;
  out << "{\"kind\":" << json_string(storage::to_string(p.kind))
      << ",\"stream_id\":" << json_string(p.stream_id) << ",\"stream_version\":" << p.stream_version
      << ",\"global_position\":" << p.global_position << ",\"event_id\":" << json_string(p.event_id)
      << ",\"message\":" << json_string(p.message) << "}";
  return out.str();
}

void print_line(const char* label, const VerifyProblem& p) {
  std::cout << label << " " << storage::to_string(p.kind);
  if (!p.stream_id.empty()) std::cout << " stream=" << p.stream_id;
  if (p.stream_version != 0) std::cout << " version=" << p.stream_version;
  if (p.global_position != 0) std::cout << " position=" << p.global_position;
  if (!p.event_id.empty()) std::cout << " event=" << p.event_id;
  std::cout << ": " << p.message << "\n";
}

template <class Items, class Print>
void json_array(const char* name, const Items& items, Print print) {
  std::cout << ",\n\"" << name << "\":[";
  bool first = true;
  for (const auto& item : items) {
    std::cout << (first ? "\n" : ",\n") << print(item);
    first = false;
  }
  std::cout << "]";
}

}  // namespace

void VerifyCommand::add_to(CLI::App& app) {
  m_command = app.add_subcommand(
      "verify",
      "Tamper evidence: recompute every hash chain and check versions, stream rows and the read "
      "models against the log; name the first bad event of each stream (exit 8 if any)");
  m_command->add_option("user", m_user, "Verify this stream only (a user, $def:<key> or $audit)");
  m_command->add_flag("--all", m_all, "Verify every stream and the checks across streams");
  m_command->add_flag("--no-projections", m_no_projections,
                      "Check the log only, not the read models (faster)");
  m_command->add_flag("--json", m_json,
                      "Print JSON: every stream's head (version, position, chain hash), the "
                      "problems, warnings and a summary");
  m_command->add_flag("--quiet", m_quiet, "No progress on stderr");
}

std::optional<int> VerifyCommand::run() {
  if (m_command == nullptr || !m_command->parsed()) return std::nullopt;
  if (m_all == !m_user.empty()) {
    std::cerr << "prefstore: verify needs a USER or --all (not both)\n";
    return kUsage;
  }
  StoreOptions store_opts = store_options(true, Task::read);
  store_opts.migrate_on_open = false;  // verify writes nothing: it runs as prefstore_reader too
  store_opts.pool.max_size = 1;
  Store store(store_opts);

  VerifyOptions options;
  if (!m_all) options.stream_id = m_user;
  options.check_projections = !m_no_projections;
  if (m_all && !m_quiet && ::isatty(STDERR_FILENO) != 0) {  // a progress line for people
    options.progress = [](const VerifyProgress& p) {
      std::cerr << "\rverify: " << p.streams << "/" << p.total_streams << " streams, " << p.events
                << " events" << std::flush;
    };
  }
  bool first_head = true;
  if (m_json) {
    std::cout << "{\"database\":" << json_string(store.redacted_database_url()) << ",\n\"heads\":[";
    options.on_stream = [&first_head](const StreamHead& h) {
      std::cout << (first_head ? "\n" : ",\n") << "{\"stream_id\":" << json_string(h.stream_id)
                << ",\"version\":" << h.version << ",\"last_position\":" << h.last_position
                << ",\"chain_head\":" << json_string(h.chain_head)
                << ",\"intact\":" << (h.intact ? "true" : "false") << "}";
      first_head = false;
    };
  }
  const auto started = std::chrono::steady_clock::now();
  const VerifyReport report = store.verify(options);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  if (options.progress) std::cerr << "\n";

  if (m_json) {
    std::cout << "]";
    json_array("problems", report.problems, problem_json);
    json_array("warnings", report.warnings, problem_json);
    json_array("notes", report.notes, [](const std::string& s) { return json_string(s); });
    std::ostringstream summary;
    summary << std::fixed << std::setprecision(3)
            << "{\"clean\":" << (report.clean() ? "true" : "false")
            << ",\"problems\":" << report.problem_count << ",\"streams\":" << report.streams_checked
            << ",\"events\":" << report.events_checked
            << ",\"snapshots\":" << report.snapshots_checked
            << ",\"read_model_rows\":" << report.projection_rows_checked
            << ",\"projections_checked\":" << (report.projections_checked ? "true" : "false")
            << ",\"value_counts_streams_behind\":" << report.value_counts_streams_behind
            << ",\"erasure_records\":" << report.erasure_records
            << ",\"compaction_records\":" << report.compaction_records
            << ",\"log_end_position\":" << report.log_end_position << ",\"seconds\":" << seconds
            << "}";
    std::cout << ",\n\"summary\":" << summary.str() << "}\n";
  } else {
    for (const auto& p : report.problems) print_line("PROBLEM", p);
    for (const auto& w : report.warnings) print_line("WARNING", w);
    for (const auto& n : report.notes) std::cout << "note: " << n << "\n";
    std::cout << "verified " << report.streams_checked << " streams, " << report.events_checked
              << " events up to position " << report.log_end_position;
    if (report.projections_checked) {
      std::cout << ", " << report.projection_rows_checked << " read-model rows, "
                << report.snapshots_checked << " snapshots";
    } else {
      std::cout << " (log only: read models not compared)";
    }
    std::cout << "; $audit holds " << report.erasure_records << " erasure and "
              << report.compaction_records << " compaction records";
    if (report.value_counts_streams_behind > 0) {
      std::cout << "; " << report.value_counts_streams_behind
                << " streams not yet covered by preference_value_counts (behind, not wrong)";
    }
    std::cout << std::fixed << std::setprecision(2) << "; " << seconds << " s: ";
    if (report.clean()) {
      std::cout << "clean" << (report.warnings.empty() ? "" : " (with warnings)") << "\n";
    } else {
      std::cout << report.problem_count << (report.problem_count == 1 ? " problem" : " problems");
      if (report.problem_count > static_cast<std::int64_t>(report.problems.size())) {
        std::cout << " (the first " << report.problems.size() << " listed)";
      }
      std::cout << "\n";
    }
  }
  return report.clean() ? kOk : kCorrupt;
}

}  // namespace prefstore::cli
