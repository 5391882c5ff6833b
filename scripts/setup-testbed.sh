#!/usr/bin/env bash
# Creates (or refreshes) .venv with the local AWS test bed's pinned packages (moto and friends).
# Reinstalls only when tests/testbed/requirements.txt changed. Needs python3 (3.9 or later).
set -euo pipefail
cd "$(dirname "$0")/.."

req=tests/testbed/requirements.txt
stamp=.venv/.requirements.sha256
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "setting up the test bed's virtualenv (.venv) from $req ..." >&2
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$req"
echo "$want" > "$stamp"
