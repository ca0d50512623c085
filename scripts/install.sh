#!/usr/bin/env bash
# Sourced by start.sh and test.sh: create a virtual environment ($VENV, default .venv) with $PY
# (default python3) and install the project with its test extras (again when pyproject.toml changes).
PY=${PY:-${PYTHON:-python3}}
VENV=${VENV:-.venv}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "healthbook-bot needs Python 3.11 or newer (found: $("$PY" --version 2>&1))" >&2
  exit 1
fi
stamp="$VENV/.install-stamp"
want=$( (cat pyproject.toml; "$PY" --version) | sha256sum | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "Installing healthbook-bot into $VENV ($("$PY" --version 2>&1)) ..." >&2
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip >&2
  "$VENV/bin/python" -m pip install --quiet -e ".[test]" >&2
  echo "$want" > "$stamp"
fi
