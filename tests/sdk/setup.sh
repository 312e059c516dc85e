#!/usr/bin/env bash
# Prepare the official-SDK test harness (tests/sdk): Debian Chromium for the browser SDKs
# and the pinned npm packages from package-lock.json. Idempotent and non-interactive;
# safe to run on every CI run (a no-op when everything is already in place).
set -euo pipefail

SDK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export DEBIAN_FRONTEND=noninteractive

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; fi

# 1. Chromium (Playwright's own browser download is not available here: use Debian's).
if [ ! -x /usr/bin/chromium ]; then
  echo "[sdk-setup] installing Debian chromium"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq chromium </dev/null
fi
[ -x /usr/bin/chromium ] || { echo "[sdk-setup] /usr/bin/chromium still missing" >&2; exit 1; }

# 2. Node.js >= 20 (@segment/analytics-node 3.x requires it).
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || {
  echo "[sdk-setup] node and npm are required (Node.js >= 20)" >&2; exit 1; }
NODE_MAJOR="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$NODE_MAJOR" -lt 20 ]; then
  echo "[sdk-setup] Node.js >= 20 required, found $(node --version)" >&2; exit 1
fi

# 3. npm packages, reinstalled only when package.json/package-lock.json changed.
STAMP="$SDK_DIR/node_modules/.onefold-setup-stamp"
WANT="$(cat "$SDK_DIR/package.json" "$SDK_DIR/package-lock.json" | sha256sum | cut -d' ' -f1) node-$NODE_MAJOR"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  echo "[sdk-setup] npm ci in $SDK_DIR"
  # No package here needs an install script (the only one, msgpackr-extract, is an
  # optional native speed-up of an optional dependency of the rudder node SDK).
  (cd "$SDK_DIR" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error </dev/null)
  echo "$WANT" > "$STAMP"
fi

echo "[sdk-setup] ready: $(/usr/bin/chromium --version 2>/dev/null | head -1), node $(node --version)"
