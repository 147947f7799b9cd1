#!/usr/bin/env bash
# Install (once) and run the whole test suite: engine, CLI, app (AppTest) and real-browser tests.
cd "$(dirname "$0")/.."
source scripts/_env.sh
# The browser tests drive Debian's Chromium; install it when missing and we are allowed to.
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && apt-get install -y -qq chromium chromium-driver) >&2 || echo "warning: could not install chromium" >&2
  else
    echo "warning: chromium missing (apt-get install chromium chromium-driver); browser tests will fail" >&2
  fi
fi
set +e
python -m pytest "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
