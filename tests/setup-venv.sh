#!/usr/bin/env bash
# Creates (or refreshes) the Python venv the tests and model generators use: target/pyenv.
# Idempotent: it reinstalls only when tests/requirements*.txt changed since the last install.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/target/pyenv"
req="$root/tests/requirements.txt"
nodeps="$root/tests/requirements-nodeps.txt"
stamp="$venv/.requirements.sha256"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
  mkdir -p "$root/target"
  "$python" -m venv "$venv"
fi
want="$(cat "$req" "$nodeps" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -r "$nodeps"
  echo "$want" > "$stamp"
fi
echo "$venv"
