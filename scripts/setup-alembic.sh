#!/usr/bin/env bash
# Write an async Alembic setup (alembic.ini, env.py) into the current project.
# Thin wrapper: the logic is scripts/setup-alembic.py, run with $PYTHON (default python3; use the
# project's venv so its SQLAlchemy and drivers are found). Usage and exit codes: --help
set -u
src="${BASH_SOURCE[0]}"
while [ -L "$src" ]; do  # follow symlinks to the real scripts/ directory
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
exec "$py" "$here/setup-alembic.py" "$@"
