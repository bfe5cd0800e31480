#!/usr/bin/env bash
# Sets everything up (Debian packages, .venv with the test tools), lints, and runs
# the whole test suite. Extra arguments go to pytest (for example: -k login).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --dev
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest "$@"
