#!/usr/bin/env bash
# Sets everything up, then starts pancake.py on the simulated camera:
# live view on http://localhost:8000, motion clips in ./demo-h264.
# Extra arguments go to pancake.py (for example: --port 8080).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
mkdir -p demo-h264
echo "Live view: http://localhost:8000  (Ctrl-C to stop; clips go to ./demo-h264)"
exec .venv/bin/python pancake.py --camera sim --resolution 640 480 --fps 15 \
  --detect image --record-detection edge demo-h264 "$@"
