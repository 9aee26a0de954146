#!/usr/bin/env bash
# Set up pip mode from a fresh clone: .venv with the pinned requirements and neurovla itself
# (editable). Idempotent: a re-run with unchanged requirements.txt / setup.py / setup.cfg
# returns at once. Afterwards: .venv/bin/neurovla bringup --headless --duration 20
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

# Debian packages (debian-packages.txt): installed when run as root, else the one line to run
mapfile -t debs < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' debian-packages.txt | tr -d ' ')
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup.sh: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
  else
    echo "setup.sh: the tests need Debian packages that are missing; run:" >&2
    echo "  sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
  fi
fi

PYTHON=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.neurovla-setup
want=$(cat requirements.txt setup.py setup.cfg neurovla_ros/*/*.c | sha256sum | cut -d' ' -f1)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/neurovla" ]; then
  echo "setup.sh: $VENV is up to date"
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup.sh: creating $VENV with $($PYTHON --version)"
  "$PYTHON" -m venv "$VENV"
fi
pip=("$VENV/bin/python" -m pip install --disable-pip-version-check)

# torch first and pinned: the pinned version is the CPU wheel; an unpinned torch pulls CUDA.
torch_pin=$(grep -E '^torch==' requirements.txt)
echo "setup.sh: installing $torch_pin"
"${pip[@]}" "$torch_pin"
echo "setup.sh: installing requirements.txt"
"${pip[@]}" -r requirements.txt
echo "setup.sh: installing neurovla (editable)"
"${pip[@]}" --no-deps -e .

"$VENV/bin/python" -c 'import rclpy, mujoco, torch, neurovla_ros.graph'
echo "$want" > "$STAMP"
echo "setup.sh: done. Try: $VENV/bin/neurovla bringup --headless --duration 20"
