#!/usr/bin/env bash
# The layers of DESIGN.md: core (no database) <- storage <- projections <- facade <- cli.
# Only storage (and storage's own tests and test support) may include libpqxx or libpq;
# core includes nothing of the layers above it. Prints each violation; exits 1 if any.
set -u
root=${1:?usage: layering_check.sh SOURCE_DIR}
cd "$root" || exit 2
bad=0
report() { echo "layering violation: $1"; bad=1; }

while IFS= read -r hit; do report "$hit (only storage may use libpqxx/libpq)"; done < <(
  grep -rnE '#include *[<"](pqxx/|libpq-fe\.h)' core projections facade cli 2>/dev/null)
while IFS= read -r hit; do report "$hit (core must not depend on other layers)"; done < <(
  grep -rnE '#include *[<"]prefstore/(storage|projections|store)' core 2>/dev/null)
while IFS= read -r hit; do report "$hit (storage must not depend on projections or the facade)"; done < <(
  grep -rnE '#include *[<"]prefstore/(projections|store)' storage 2>/dev/null)
while IFS= read -r hit; do report "$hit (projections must not depend on the facade)"; done < <(
  grep -rnE '#include *[<"]prefstore/store' projections 2>/dev/null)
# A public header must not include a private one.
while IFS= read -r hit; do report "$hit (public header includes a private one)"; done < <(
  grep -rnE '#include *"[a-z_]+\.hpp"' core/include storage/include projections/include facade/include 2>/dev/null)

if [ "$bad" -eq 0 ]; then
  echo "layering: ok (core <- storage <- projections <- facade <- cli)"
fi
exit $bad
