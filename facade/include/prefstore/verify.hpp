// Tamper evidence through the Store: the options, report and findings of Store::verify, under
// the prefstore namespace (they are storage's types: storage/verify.hpp says what each check
// compares, and that a run is read-only and bounded in memory).
// Thread-safety: plain values.
#pragma once

#include "prefstore/storage/verify.hpp"

namespace prefstore {

// Which stream (or all), batch sizes, callbacks, and whether to compare the read models.
using VerifyOptions = storage::VerifyOptions;
// What a verify run found: counts, problems (the first bad event of each stream), warnings.
using VerifyReport = storage::VerifyReport;
// One finding: its kind, the event (stream, version, position, id) and what is wrong.
using VerifyProblem = storage::VerifyProblem;
// What is wrong; to_string gives the persisted name ("chain_mismatch", ...).
using VerifyProblemKind = storage::VerifyProblemKind;
// A verified stream's last version, position and chain hash, for recording elsewhere.
using StreamHead = storage::StreamHead;
// Streams and events verified so far, for progress output.
using VerifyProgress = storage::VerifyProgress;

}  // namespace prefstore
