#!/usr/bin/env bash
# Install healthbook-bot into .venv (once), then run the linter and the whole test suite:
# always on SQLite, and on PostgreSQL too when TEST_DATABASE_URL is set or a server answers
# on 127.0.0.1:5432 (database "test").
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/install.sh
if [ -z "${TEST_DATABASE_URL:-}" ] && .venv/bin/python - <<'PY'
import socket, sys
s = socket.socket()
s.settimeout(1)
sys.exit(s.connect_ex(("127.0.0.1", 5432)))
PY
then
  export TEST_DATABASE_URL="postgresql+asyncpg://postgres@127.0.0.1:5432/test"
  echo "PostgreSQL answers on 127.0.0.1:5432: the suite runs on SQLite and PostgreSQL" >&2
fi
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
