#!/usr/bin/env bash
# Make one eval run's working copy (evals/README.md, steps 2 and 3) and print its path.
# Usage: evals/harness/make_run.sh TASK ARM N    (ARM: with-skill | without-skill)
# RUNS_DIR (default /tmp/evalruns) holds the runs; an existing run folder is replaced.
set -euo pipefail
[ $# -eq 3 ] || { echo "usage: $0 TASK with-skill|without-skill N" >&2; exit 2; }
task=$1 arm=$2 n=$3
root="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd)"
case "$arm" in with-skill|without-skill) ;; *) echo "ARM must be with-skill or without-skill" >&2; exit 2 ;; esac
[ -d "$root/evals/tasks/$task/project" ] || { echo "no task $task (evals/tasks/$task/project)" >&2; exit 2; }
run="${RUNS_DIR:-/tmp/evalruns}/$task/$arm-$n"
rm -rf -- "$run"
mkdir -p -- "$run"
cp -r "$root/evals/tasks/$task/project/." "$run/"
(cd "$run" && git init -q && echo .claude/ >> .git/info/exclude && git add -A \
    && git -c user.email=eval@localhost -c user.name=eval commit -qm start)
if [ "$arm" = with-skill ]; then
    skill="$run/.claude/skills/async-sqlalchemy-patterns"
    mkdir -p -- "$skill"
    (cd "$root" && cp -r SKILL.md LICENSE templates examples references scripts "$skill/")
    find "$skill" -name __pycache__ -prune -exec rm -rf {} +
    (cd "$root" && git rev-parse --short HEAD) > "$run/.git/skill_commit"
fi
echo "$run"
