#!/usr/bin/env bash
# What the end-to-end tests drive for real: headless Chromium (the pages in a browser),
# Mosquitto (a real MQTT broker), the DejaVu fonts `pitwall-flow plot` draws its text with
# (all from Debian's packages), and pyarrow (an independent Parquet reader, from PyPI).
# Installs whatever is missing, says what it installed, and checks each is usable after.
set -euo pipefail
. "$(dirname "$0")/lib/setup.sh"

pip_install pyarrow pyarrow
need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
apt_install "${need[@]}"
[ -x /usr/bin/chromium ] || die "/usr/bin/chromium is missing after installing Debian's chromium"
[ -x /usr/sbin/mosquitto ] || die "/usr/sbin/mosquitto is missing after installing Debian's mosquitto"
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || die "DejaVuSans.ttf is missing after installing fonts-dejavu-core"
