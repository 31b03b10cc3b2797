#!/usr/bin/env bash
# The repository checks must be able to fail: plants one violation in a copy of the sources and
# requires the check to exit 1 naming it.
#   check_fails.sh SOURCE_DIR WORK_DIR upward_include|stale_exception|drifted_quote
set -euo pipefail
src="$1" work="$2" kind="$3"
rm -rf "$work"
mkdir -p "$work/tests"
cp -r "$src/include" "$src/docs" "$src/scripts" "$work/"
cp "$src/tests/guide_example.cpp" "$src/tests/test_recipe.cpp" "$work/tests/"
case "$kind" in
  upward_include)  # freeze/ may include only core/
    sed -i 's|#include "vitfreeze/freeze/spacing.hpp"|&\n#include "vitfreeze/train/pretrainer.hpp"|' "$work/include/vitfreeze/freeze/schedule.hpp"
    check=(python3 "$work/scripts/check_layering.py" --root "$work") expect="freeze -> train" ;;
  stale_exception)  # an arrow removed while its exception stays listed
    sed -i '/#include "vitfreeze\/backend\/cpu\/contrastive.hpp"/d' "$work/include/vitfreeze/backend/cuda/backend.cuh"
    check=(python3 "$work/scripts/check_layering.py" --root "$work") expect="no longer included" ;;
  drifted_quote)
    echo "// an edit the guide does not show" >> "$work/tests/guide_example.cpp"
    check=(python3 "$work/scripts/check_doc_quotes.py" --root "$work") expect="differs from tests/guide_example.cpp" ;;
  *) echo "unknown kind $kind" >&2; exit 2 ;;
esac
status=0
output="$("${check[@]}" 2>&1)" || status=$?
echo "$output" | grep -v '^warning:'
if [ "$status" -ne 1 ] || ! grep -q -- "$expect" <<<"$output"; then
  echo "FAIL: expected exit 1 and '$expect', got exit $status" >&2
  exit 1
fi
echo "ok: the check failed as it must"
