#!/usr/bin/env bash
# Check that an async SQLAlchemy app can reach its database; see --help.
# Thin wrapper: runs scripts/test-connection.py with ${PYTHON:-python3} (use the app's venv python).
set -euo pipefail
here="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
exec "${PYTHON:-python3}" "$here/test-connection.py" "$@"
