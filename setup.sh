#!/usr/bin/env bash
# Install crisis-dispatch and everything it needs: Debian's headless Chromium (to check the maps as a
# person sees them) and the Python package with its test extras. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq chromium >/dev/null
fi

python3 -m pip install --quiet --disable-pip-version-check -e '.[test,bench]'
echo "crisis-dispatch installed: $(command -v crisis-dispatch)"
