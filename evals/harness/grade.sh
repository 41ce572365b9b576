#!/usr/bin/env bash
# Grade one eval run (evals/README.md, step 6): writes grade-ARM-N.txt and .rc next to the run.
# Usage: evals/harness/grade.sh TASK ARM N   (TEST_POSTGRES_URL / TEST_MYSQL_URL from the environment)
set -uo pipefail
[ $# -eq 3 ] || { echo "usage: $0 TASK with-skill|without-skill N" >&2; exit 2; }
task=$1 arm=$2 n=$3
root="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd)"
base="${RUNS_DIR:-/tmp/evalruns}/$task"
[ -d "$base/$arm-$n" ] || { echo "no run $base/$arm-$n" >&2; exit 2; }
"${PYTHON:-$root/.venv/bin/python}" "$root/evals/tasks/$task/grade.py" "$base/$arm-$n" > "$base/grade-$arm-$n.txt" 2>&1
rc=$?
echo "$rc" > "$base/grade-$arm-$n.rc"
echo "$task $arm $n exit=$rc $(grep -E '^score' "$base/grade-$arm-$n.txt" | tail -1)"
grep -E '^(FAIL|SKIP)' "$base/grade-$arm-$n.txt" | head -5
exit 0
