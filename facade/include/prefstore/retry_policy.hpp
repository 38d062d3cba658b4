// RetryPolicy: how a Store retries a call that failed with a transient error.
//
// Transient means TransientError (errors.hpp, retryable() true): the connection was lost or
// refused, the server is shutting down, starting or read-only, the pool was exhausted, a
// serialization failure (40001), a deadlock (40P01), a lock timeout (55P03), or a COMMIT whose
// outcome is unknown. Every other error (a refused value, a version conflict, a missing
// privilege, corrupt data) is thrown at once: repeating the call would fail the same way.
// Retrying a write is safe because appends are idempotent by event id: the store fixes the
// event ids before the first attempt, so a retry of a commit that did land returns the stored
// result and stores nothing twice. Thread-safety: a plain value; on_retry may be called from
// any thread that uses the store.
#pragma once

#include <chrono>
#include <functional>

#include "prefstore/errors.hpp"

namespace prefstore {

struct RetryPolicy {
  // Attempts in all, the first included; 1 turns retries off. Default 6.
  int max_attempts = 6;
  // Wait before the first retry; each later wait is `multiplier` times longer, up to
  // max_backoff. Defaults 25 ms, x2, 1 s.
  std::chrono::milliseconds initial_backoff{25};
  double multiplier = 2.0;
  std::chrono::milliseconds max_backoff{1000};
  // Full jitter share: each wait is drawn uniformly from [wait * (1 - jitter), wait], so that
  // many clients failing together do not retry together. 0 to 1; default 0.5.
  double jitter = 0.5;
  // Budget of the whole call from its first attempt: no retry starts after it, and a wait never
  // runs past it. 0 for none. Default 10 s.
  std::chrono::milliseconds deadline{10000};
  // Called before each retry with the error, the attempt that failed (1-based) and the wait;
  // for logs and metrics. Must not throw. Default: none.
  std::function<void(const Error& error, int attempt, std::chrono::milliseconds wait)> on_retry;
};

}  // namespace prefstore
