#!/usr/bin/env bash
# expect.sh CODE PATTERN [--not PATTERN] -- COMMAND...
# Runs COMMAND and passes when it exits with CODE and its output (stdout and stderr together)
# matches the extended regular expression PATTERN, and not the one after --not when given.
set -uo pipefail
code=$1 pattern=$2
shift 2
forbidden=
if [[ ${1:-} == --not ]]; then forbidden=$2; shift 2; fi
[[ ${1:-} == -- ]] && shift
output=$("$@" 2>&1)
status=$?
echo "$output" | tail -n 20
fail() { echo "expect.sh: $*" >&2; exit 1; }
((status == code)) || fail "exit status $status, expected $code"
grep -Eq -- "$pattern" <<<"$output" || fail "output does not match: $pattern"
if [[ -n $forbidden ]] && grep -Eq -- "$forbidden" <<<"$output"; then fail "output matches: $forbidden"; fi
echo "expect.sh: ok"
