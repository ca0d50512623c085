#!/usr/bin/env bash
# Sourced by start.sh and test.sh: create .venv and install the project with its test extras.
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "healthbook-bot needs Python 3.11 or newer (found: $("$PY" --version 2>&1))" >&2
  exit 1
fi
stamp=".venv/.install-stamp"
want=$(cat pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "Installing healthbook-bot into .venv ..." >&2
  "$PY" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip >&2
  .venv/bin/python -m pip install --quiet -e ".[test]" >&2
  echo "$want" > "$stamp"
fi
