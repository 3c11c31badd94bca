#!/usr/bin/env bash
# What the end-to-end tests drive for real: headless Chromium (the dashboard in a browser),
# Mosquitto (a real MQTT broker), the DejaVu fonts `pitwall-flow plot` draws its text with
# (all from Debian's packages), and pyarrow (an independent Parquet reader, from PyPI).
# Installs whatever is missing.
set -euo pipefail
python3 -c 'import pyarrow' 2>/dev/null || python3 -m pip install pyarrow
need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
[ ${#need[@]} -eq 0 ] && exit 0
as_root=()
[ "$(id -u)" -eq 0 ] || as_root=(sudo)
"${as_root[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
