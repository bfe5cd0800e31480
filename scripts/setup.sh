#!/usr/bin/env bash
# Installs what Raspberry Pancake needs on Debian/Ubuntu (or Raspberry Pi OS) and
# creates .venv. "--dev" adds what the tests use and, on Debian 12, .venv-os: a
# venv on Debian's own python3 packages, the versions Raspberry Pi OS Bookworm
# installs, for the suite's second run. Safe to run again: it installs only what
# is missing. Used by scripts/demo.sh and scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

dev=no
[ "${1:-}" = "--dev" ] && dev=yes

packages=(python3 python3-venv python3-pip ffmpeg fonts-dejavu-core)
if [ "$dev" = yes ]; then
  packages+=(ncftp openssh-server openssh-client chromium faketime iproute2 procps systemd)
  packages+=(mosquitto)  # the MQTT broker the postproc --mqtt tests run
  packages+=(e2fsprogs util-linux)  # loop devices, fsfreeze, e2fsck: the disk-fault tests
  packages+=(mkvtoolnix)  # mkvmerge reads the .pts timestamp files in a format test
fi
# Debian 12's own Python libraries, and the players the viewer tests drive
os_packages=no
os_release=$(. /etc/os-release 2>/dev/null && echo "${ID:-} ${VERSION_ID:-}" || true)
if [ "$dev" = yes ] && { [ "$os_release" = "debian 12" ] || [ "$os_release" = "raspbian 12" ]; }; then
  os_packages=yes
  packages+=(python3-tornado python3-numpy python3-pil python3-av python3-paho-mqtt)
  packages+=(python3-pytest python3-pytest-timeout python3-pyftpdlib)
fi
[ "$dev" = yes ] && packages+=(vlc-bin vlc-plugin-base)

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

if [ "$os_packages" = yes ]; then
  # Debian's python, seeing apt's packages; pip adds only what Debian lacks (test
  # tools): requirements.txt's lower bounds are Debian's versions
  if [ ! -x .venv-os/bin/python ]; then
    /usr/bin/python3 -m venv --system-site-packages .venv-os
  fi
  .venv-os/bin/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
fi

if [ "$dev" = yes ]; then
  # The real Picamera2 for the picamera2 backend's tests, without its Pi-only
  # dependencies (see requirements-dev.txt), outside site-packages so that only
  # the tests that make a fake Pi see it.
  picamera2=$(sed -n 's/^# no-deps: *//p' requirements-dev.txt)
  if [ ! -d ".venv/pi-libs/${picamera2/==/-}.dist-info" ]; then
    .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --upgrade \
      --target .venv/pi-libs "$picamera2"
  fi
fi
