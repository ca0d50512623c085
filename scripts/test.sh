#!/usr/bin/env bash
# Install healthbook-bot into .venv (once), then run the linter and the whole test suite:
# always on SQLite, and on PostgreSQL too when TEST_DATABASE_URL is set or a server answers
# on 127.0.0.1:5432 (each run creates and drops a database of its own there).
# In CI (CI=true, or HEALTHBOOK_TEST_ALL_PYTHONS=1) PostgreSQL is required, and the suite runs
# a second time, on SQLite, under the newest Python 3 found beside the default one.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/install.sh
ci=false
if [ "${CI:-}" = "true" ] || [ "${HEALTHBOOK_TEST_ALL_PYTHONS:-}" = "1" ]; then ci=true; fi

pg_answers() {
  "$VENV/bin/python" - <<'PY'
import socket, sys
s = socket.socket()
s.settimeout(1)
sys.exit(s.connect_ex(("127.0.0.1", 5432)))
PY
}
if [ -z "${TEST_DATABASE_URL:-}" ] && pg_answers; then
  export TEST_DATABASE_URL="postgresql+asyncpg://postgres@127.0.0.1:5432/test"
fi
if [ -n "${TEST_DATABASE_URL:-}" ]; then
  echo "PostgreSQL: the suite runs on SQLite and on PostgreSQL (a database of its own per run)" >&2
elif $ci; then
  echo "error: CI needs PostgreSQL (the never-overbooked proof only holds there), but no server" >&2
  echo "answers on 127.0.0.1:5432 and TEST_DATABASE_URL is not set. Start PostgreSQL, or set" >&2
  echo "TEST_DATABASE_URL=postgresql+asyncpg://USER@HOST:PORT/DB (a database the tests may use" >&2
  echo "to create and drop their own)." >&2
  exit 1
fi
"$VENV/bin/ruff" check .
if ! $ci; then
  exec "$VENV/bin/python" -m pytest "$@"
fi
"$VENV/bin/python" -m pytest "$@"

# The newest Python 3 on this machine other than the default one: the suite again, on SQLite.
default=$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
newest=""
for minor in $(seq 20 -1 12); do
  for cand in "python3.$minor" ${PYENV_ROOT:-$HOME/.pyenv}/versions/3.$minor*/bin/python3; do
    if [ "3.$minor" != "$default" ] && "$cand" -c 'import sys' >/dev/null 2>&1; then
      newest=$cand; break 2
    fi
  done
done
if [ -z "$newest" ]; then
  echo "no Python newer than $default found: the suite ran on Python $default only" >&2
  exit 0
fi
echo "The suite again on $("$newest" --version 2>&1) (SQLite)" >&2
PY=$newest VENV=.venv/newest source scripts/install.sh
TEST_DATABASE_URL= exec .venv/newest/bin/python -m pytest "$@"
