#!/usr/bin/env bash
# Make headless Chromium available for the browser tests (scripts/run-browser-tests.mjs), which
# drive /usr/bin/chromium through puppeteer-core (no browser download). On a GPU-less machine its
# WebGPU adapter is SwiftShader, on the CPU, so no GPU driver is needed for it.
#
# What it does:
#   - if /usr/bin/chromium (or $CHROMIUM_PATH) exists and runs, nothing;
#   - with apt-get on Debian and root (or sudo): installs Debian's `chromium` package;
#   - anywhere else: prints what to install and exits 1.
# Safe to run repeatedly. ONEGEN_SKIP_BROWSER_SETUP=1 skips it; ONEGEN_SETUP_DRY_RUN=1 prints the
# commands it would run instead of running them (to test this script on a machine that has chromium).
set -euo pipefail

log() { echo "[setup-browser] $*"; }
run() { if [ "${ONEGEN_SETUP_DRY_RUN:-}" = 1 ]; then log "would run: $*"; else "$@"; fi; }

if [ "${ONEGEN_SKIP_BROWSER_SETUP:-}" = 1 ]; then log "skipped (ONEGEN_SKIP_BROWSER_SETUP=1)"; exit 0; fi

chromium="${CHROMIUM_PATH:-/usr/bin/chromium}"
if [ -x "$chromium" ]; then
  if v=$("$chromium" --version 2>/dev/null); then log "found $chromium ($v); nothing to do"; exit 0; fi
  log "$chromium exists but does not run (--version failed); reinstalling"
fi

if ! command -v apt-get >/dev/null 2>&1 || [ ! -r /etc/debian_version ]; then
  log "no apt here. Install Chromium >= 121 (WebGPU) and point CHROMIUM_PATH at its binary,"
  log "e.g. the distribution's 'chromium' package; the tests start it with --enable-unsafe-webgpu."
  exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else log "need root (or sudo) to install Debian's 'chromium' package"; exit 1; fi
fi

export DEBIAN_FRONTEND=noninteractive
log "installing Debian's 'chromium' package"
run $SUDO apt-get update -qq
run $SUDO apt-get install -y -qq chromium
if [ "${ONEGEN_SETUP_DRY_RUN:-}" = 1 ]; then exit 0; fi
if ! v=$(/usr/bin/chromium --version 2>/dev/null); then
  log "installed 'chromium' but /usr/bin/chromium does not run"
  exit 1
fi
[ "$chromium" = /usr/bin/chromium ] || log "note: CHROMIUM_PATH=$chromium; the package installed /usr/bin/chromium"
log "installed $v"
