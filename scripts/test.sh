#!/usr/bin/env bash
# Sets everything up (Debian packages, the venvs with the test tools), lints, and
# runs the whole test suite twice, both at once:
#   pypi  in .venv, with the newest tornado, numpy, Pillow and PyAV from PyPI;
#   os    in .venv-os, on Debian 12's own python3 packages: the versions Raspberry
#         Pi OS Bookworm installs, which are requirements.txt's lower bounds
#         (only on Debian 12; elsewhere the pypi run alone).
# Most of the suite's time is spent waiting on real processes and sockets, so the
# two runs share the machine well. Extra arguments go to both pytest runs (for
# example: -k login). TEST_RUNS="pypi" (or "os") picks one run.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --dev
.venv/bin/ruff check .
.venv/bin/ruff format --check .

runs=${TEST_RUNS:-pypi os}
if [ ! -x .venv-os/bin/python ]; then
  [[ " $runs " == *" os "* ]] && echo "(not Debian 12: no run on Debian's own packages)"
  runs=${runs//os/}
fi
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
declare -A pids
for run in $runs; do
  case $run in
    pypi) python=.venv/bin/python; extra=() ;;
    # its own pytest cache would race the other run's: none
    os) python=.venv-os/bin/python; extra=(-p no:cacheprovider) ;;
    *) echo "unknown run $run (pypi or os)" >&2; exit 2 ;;
  esac
  echo "starting the $run run: $($python -c 'import sys, tornado, numpy, PIL, av
print("Python %d.%d.%d" % sys.version_info[:3], "tornado", tornado.version,
      "numpy", numpy.__version__, "Pillow", PIL.__version__, "PyAV", av.__version__)')"
  PANCAKE_OS_PACKAGES=$([ "$run" = os ] && echo 1 || true) \
    "$python" -m pytest "${extra[@]}" "$@" >"$logs/$run.log" 2>&1 &
  pids[$run]=$!
done
status=0
for run in $runs; do
  code=0
  wait "${pids[$run]}" || code=$?
  echo
  echo "===== the $run run (exit code $code) ====="
  cat "$logs/$run.log"
  # pytest's "no tests collected" (5) is a failure here too: the suite must run
  [ "$code" -eq 0 ] || status=1
done
exit $status
