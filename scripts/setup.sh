#!/usr/bin/env bash
# Installs what Raspberry Pancake needs on Debian/Ubuntu (or Raspberry Pi OS) and
# creates .venv. "--dev" adds what the tests use. Safe to run again: it installs
# only what is missing. Used by scripts/demo.sh and scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

dev=no
[ "${1:-}" = "--dev" ] && dev=yes

packages=(python3 python3-venv python3-pip ffmpeg fonts-dejavu-core)
if [ "$dev" = yes ]; then
  packages+=(ncftp openssh-server openssh-client chromium faketime iproute2 procps systemd)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "Installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
requirements=requirements.txt
[ "$dev" = yes ] && requirements=requirements-dev.txt
.venv/bin/python -m pip install -q --disable-pip-version-check -r "$requirements"
