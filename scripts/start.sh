#!/usr/bin/env bash
# Install healthbook-bot into .venv (once, and again when pyproject.toml changes), then start it:
# the real bot when a token is configured, otherwise the terminal demo on the embedded SQLite.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/install.sh
exec .venv/bin/healthbook start "$@"
