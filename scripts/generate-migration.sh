#!/usr/bin/env bash
# Thin wrapper: the logic is scripts/generate-migration.py, run with $PYTHON (default python3; use the project's venv).
# Usage and exit codes: bash generate-migration.sh --help
set -u
src="${BASH_SOURCE[0]}"
while [ -L "$src" ]; do  # follow symlinks to the real scripts/ directory (the templates are found from there)
    dir="$(cd -P -- "$(dirname -- "$src")" && pwd)"
    src="$(readlink -- "$src")"
    [[ "$src" == /* ]] || src="$dir/$src"
done
here="$(cd -P -- "$(dirname -- "$src")" && pwd)"
py="${PYTHON:-python3}"
if ! command -v "$py" >/dev/null 2>&1; then
    echo "error: Python interpreter '$py' not found; set PYTHON=/path/to/your/venv/bin/python" >&2
    case " $* " in *" --json "*) echo '{"ok": false, "error": "python interpreter not found (set PYTHON)", "exit_code": 3}' ;; esac
    exit 3
fi
exec "$py" "$here/generate-migration.py" "$@"
