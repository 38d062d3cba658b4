// Audit queries through the Store: the query, its page and the keys of an event, under the
// prefstore namespace (they are storage's types: storage/audit_query.hpp says what each filter
// matches and what a walk over pages guarantees while writers append).
// Thread-safety: plain values and pure functions.
#pragma once

#include "prefstore/storage/audit_query.hpp"

namespace prefstore {

// What Store::audit looks for: filters, order, page size and cursor.
using AuditQuery = storage::AuditQuery;
// One page of Store::audit: decoded events (type, keys, values, metadata) and the cursors.
using AuditPage = storage::AuditPage;
// newest_first (default) or oldest_first, by global_position.
using AuditOrder = storage::AuditOrder;

// The preference keys an event is about, as AuditQuery::key and key_prefix match them.
using storage::audit_event_keys;

}  // namespace prefstore
