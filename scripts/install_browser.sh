#!/usr/bin/env bash
# Headless browser for the retrieval page test (tests/test_serving.py): Debian's chromium +
# chromium-driver (apt, needs root) and selenium (pip). Idempotent: does nothing that is already there.
#   bash scripts/install_browser.sh
# Without root (or without apt-get) the browser packages are left out and the browser test skips.
set -euo pipefail
PY=${PYTHON:-python3}

have_browser() {
  { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; } \
    && command -v chromedriver >/dev/null 2>&1
}

if ! have_browser; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "install_browser.sh: installing chromium chromium-driver (apt)"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null 2>&1; then
      apt-get update -qq >/dev/null
      apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
    fi
  else
    echo "install_browser.sh: chromium/chromedriver missing and not root with apt-get; the browser test will skip" >&2
  fi
fi

if ! "$PY" -c "import selenium" >/dev/null 2>&1; then
  echo "install_browser.sh: installing selenium (pip)"
  "$PY" -m pip install --disable-pip-version-check -q selenium
fi
