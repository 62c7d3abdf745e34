#!/usr/bin/env bash
# Make a WebGPU adapter available on a machine without a GPU driver.
#
# Dawn (the `webgpu` npm package) needs a Vulkan driver. On machines without a GPU we use Mesa's
# software Vulkan driver, lavapipe. Debian 12 ships Mesa 22.3, whose lavapipe Dawn refuses
# ("shaderUniform*ArrayDynamicIndexing required"); Mesa 25 from bookworm-backports works.
#
# What it does:
#   - if a Vulkan driver other than lavapipe is already installed (a real GPU), nothing;
#   - if Mesa >= 25 lavapipe is already installed, nothing;
#   - on Debian 12 with apt and root: adds bookworm-backports (same mirror as the configured
#     Debian sources) and installs mesa-vulkan-drivers + libvulkan1 from it;
#   - anywhere else: prints what to install and exits 1.
# Safe to run repeatedly. Set ONEGEN_SKIP_GPU_SETUP=1 to skip entirely.
set -euo pipefail

log() { echo "[setup-software-gpu] $*"; }

if [ "${ONEGEN_SKIP_GPU_SETUP:-}" = 1 ]; then log "skipped (ONEGEN_SKIP_GPU_SETUP=1)"; exit 0; fi

icd_dirs="/usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/share/vulkan/icd.d"
for d in $icd_dirs; do
  for f in "$d"/*.json; do
    [ -e "$f" ] || continue
    case "$(basename "$f")" in
      lvp_icd*) ;;
      *) log "found a hardware Vulkan driver ($f); nothing to do"; exit 0 ;;
    esac
  done
done

mesa_version() { dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || true; }
have_vulkan_loader() { ldconfig -p 2>/dev/null | grep -q 'libvulkan.so.1'; }

v=$(mesa_version)
if [ -n "$v" ] && dpkg --compare-versions "$v" ge 25 && have_vulkan_loader; then
  log "lavapipe from Mesa $v already installed"; exit 0
fi

if ! command -v apt-get >/dev/null 2>&1 || [ ! -r /etc/debian_version ]; then
  log "no apt here. Install a Vulkan driver: a GPU vendor driver, or Mesa >= 25 (lavapipe, package"
  log "usually named mesa-vulkan-drivers / vulkan-swrast) plus the Vulkan loader (libvulkan1)."
  exit 1
fi
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else log "need root (or sudo) to install Mesa"; exit 1; fi
fi

export DEBIAN_FRONTEND=noninteractive
if [ "$codename" = bookworm ]; then
  if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    # Reuse the mirror already configured for Debian (first URIs/deb line naming /debian).
    mirror=$( { grep -rhE '^[[:space:]]*(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null || true; } \
             | grep -oE 'https?://[^ ]+/debian/?' | grep -v security | sed -n 1p || true)
    mirror=${mirror:-http://deb.debian.org/debian}
    log "adding bookworm-backports from $mirror"
    printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "$mirror" | $SUDO tee /etc/apt/sources.list.d/onegen-bookworm-backports.sources >/dev/null
  fi
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq -t bookworm-backports mesa-vulkan-drivers libvulkan1 >/dev/null
else
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
fi
v=$(mesa_version)
log "installed mesa-vulkan-drivers $v"
if [ -z "$v" ] || ! dpkg --compare-versions "$v" ge 25; then
  log "warning: Mesa $v is older than 25; Dawn may refuse its lavapipe adapter"
fi
