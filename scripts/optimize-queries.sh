#!/usr/bin/env bash
# Find N+1 queries, missing indexes and async SQLAlchemy anti-patterns (runtime and static).
# Thin wrapper: all logic is in optimize-queries.py. See --help.
set -u
HERE="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
exec "${PYTHON:-python3}" "$HERE/optimize-queries.py" "$@"
