# Sourced by scripts/start.sh and scripts/test.sh: make (or reuse) a virtual environment keyed on a
# hash of the requirements files, and activate it. Override the location with LE_VENV_ROOT.
set -euo pipefail
_le_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
req_hash=$(cat "$_le_root/requirements.txt" "$_le_root/requirements-dev.txt" | sha256sum | cut -c1-16)
VENV="${LE_VENV_ROOT:-$HOME/.cache/landscape-explorer}/venv-$req_hash"
if [ ! -f "$VENV/.complete" ]; then
  echo "setting up $VENV (first time: a few minutes, torch is large)" >&2
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --upgrade -q pip >&2 || true
  "$VENV/bin/pip" install -q -r "$_le_root/requirements-dev.txt" >&2
  touch "$VENV/.complete"
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"
