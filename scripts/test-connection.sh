#!/usr/bin/env bash
# Check that an async SQLAlchemy app can reach its database; see --help.
# Thin wrapper: runs scripts/test-connection.py with ${PYTHON:-python3} (use the app's venv python).
set -euo pipefail
src="${BASH_SOURCE[0]}"
while [ -L "$src" ]; do  # follow symlinks to the real scripts/ directory
    dir="$(cd -P -- "$(dirname -- "$src")" && pwd)"
    src="$(readlink -- "$src")"
    [[ "$src" == /* ]] || src="$dir/$src"
done
here="$(cd -P -- "$(dirname -- "$src")" && pwd)"
exec "${PYTHON:-python3}" "$here/test-connection.py" "$@"
