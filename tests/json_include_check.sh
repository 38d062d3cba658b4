#!/usr/bin/env bash
# cereal's JSON archive defines RAPIDJSON_ASSERT to throw cereal::RapidJSONException, and
# cereal's loaders rely on it to refuse a value of the wrong type (a number read as a string).
# rapidjson reads RAPIDJSON_ASSERT when it is first included: a file that includes a rapidjson
# header before <cereal/archives/json.hpp> gets rapidjson's own assert() (nothing under NDEBUG),
# so cereal's inline loaders differ between translation units and read garbage in a release
# build. Found by `make sanitize` (a debug build): verify_test aborted on GetString's assertion.
# Every C++ file that includes rapidjson must include cereal's JSON archive first. Prints each
# violation; exits 1 if any.
set -u
root=${1:?usage: json_include_check.sh SOURCE_DIR}
cd "$root" || exit 2
bad=0
while IFS= read -r file; do
  first=$(grep -nE '#include *<(rapidjson/|cereal/archives/json\.hpp)' "$file" | head -1)
  case "$first" in
    *cereal/archives/json.hpp*) ;;
    *) echo "json include order: $file:${first%%:*}: includes rapidjson before <cereal/archives/json.hpp>"
       bad=1 ;;
  esac
done < <(grep -rlE '#include *<rapidjson/' core storage projections facade cli tests bench \
           --include='*.cpp' --include='*.hpp' 2>/dev/null)
if [ "$bad" -eq 0 ]; then echo "json include order: ok"; fi
exit $bad
