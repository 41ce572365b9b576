#!/usr/bin/env bash
# Thin wrapper: the logic is scripts/generate-migration.py, run with $PYTHON (default python3).
# Usage and exit codes: bash generate-migration.sh --help
set -u
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
py="${PYTHON:-python3}"
if ! command -v "$py" >/dev/null 2>&1; then
    echo "error: Python interpreter '$py' not found; set PYTHON=/path/to/your/venv/bin/python" >&2
    case " $* " in *" --json "*) echo '{"ok": false, "error": "python interpreter not found (set PYTHON)", "exit_code": 3}' ;; esac
    exit 3
fi
exec "$py" "$here/generate-migration.py" "$@"
