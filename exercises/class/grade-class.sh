#!/usr/bin/env bash
# Grades every student's echo server in a roster: one JSON file per student
# (echo-check's schema, version 1) and one summary line each.
#
#   exercises/class/grade-class.sh ROSTER [ECHO-CHECK OPTIONS...]
#
# ROSTER has one student per line, a name and the address their server
# listens on; blank lines and lines starting with # are skipped:
#
#   ada    10.0.0.11:7000
#   brian  10.0.0.12:7000
#
# Options after the roster go to echo-check as they are, for instance
# `--only basic,sizes,stalled`, `--expect 01_blocking`, or, for an exercise
# check, `--only idle_timeout` (students start their servers with the
# exercise's options: `echo-check --exercises` lists them).
#
# Environment: GRADES_DIR (default ./grades) for the JSON files; ECHO_CHECK
# for the grader's path (default: target/release/echo-check, built if
# missing). Exit status: 0 when every student passed, 1 otherwise.
set -uo pipefail

if [ $# -lt 1 ]; then
    echo "usage: $0 ROSTER [ECHO-CHECK OPTIONS...]" >&2
    exit 2
fi
roster=$1
shift
out=${GRADES_DIR:-grades}
echo_check=${ECHO_CHECK:-target/release/echo-check}
if [ ! -x "$echo_check" ]; then
    cargo build --release --quiet --bin echo-check || exit 2
fi
mkdir -p "$out"

status=0
printf '%-16s %-24s %s\n' STUDENT ADDRESS RESULT
while read -r name addr _; do
    case "$name" in '' | '#'*) continue ;; esac
    # One student at a time: checks are load, and two at once would slow
    # each other's servers down on a shared network.
    "$echo_check" --json "$@" "$addr" >"$out/$name.json"
    case $? in
        0) result="pass" ;;
        1) result="FAIL: $out/$name.json says which check and why"; status=1 ;;
        *) result="no answer, or bad options (echo-check's message is above)"; status=1 ;;
    esac
    printf '%-16s %-24s %s\n' "$name" "$addr" "$result"
done <"$roster"
exit $status
