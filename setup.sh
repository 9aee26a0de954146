#!/usr/bin/env bash
# Set up pip mode from a fresh clone: .venv with the pinned requirements and neurovla itself
# (editable). Idempotent: a re-run with unchanged requirements.txt / setup.py / setup.cfg
# returns at once. Afterwards: .venv/bin/neurovla bringup --headless --duration 20
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

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
