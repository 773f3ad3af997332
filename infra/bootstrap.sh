#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks for the platform, then the Python environment.
# Idempotent: installs only what is missing. Called by `make bootstrap` (and so by every make target).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v ffmpeg  >/dev/null || need+=(ffmpeg)
command -v mvn     >/dev/null || need+=(maven)
ls /usr/lib/jvm/*17*/bin/java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
# The CDN edge (infra/services.py runs varnishd itself; the package's systemd unit is not used).
command -v varnishd >/dev/null || [ -x /usr/sbin/varnishd ] || need+=(varnish)
if [ "${WITH_BROWSER:-1}" = 1 ]; then
  command -v chromium >/dev/null || need+=(chromium)
  command -v node     >/dev/null || need+=(nodejs npm)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "[bootstrap] installing Debian packages: ${need[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo; command -v sudo >/dev/null || { echo "[bootstrap] error: need root (or sudo) to apt-get install ${need[*]}" >&2; exit 1; }
  else
    SUDO=
  fi
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null \
    || { echo "[bootstrap] error: apt-get install ${need[*]} failed" >&2; exit 1; }
fi

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
  || { echo "[bootstrap] error: Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2; exit 1; }

# Reinstall the venv only when pyproject.toml changed.
stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "[bootstrap] creating the Python environment in .venv"
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[test]'
  rm -f .venv/.installed-*; touch "$stamp"
fi

if [ -f web/player-check/package-lock.json ] && [ ! -d web/player-check/node_modules ]; then
  echo "[bootstrap] installing the browser player checker (npm ci)"
  (cd web/player-check && npm ci --silent --no-audit --no-fund)
fi
# The web app (web/app, served by the API at /): its packages installed when the lock file changed, the app built
# when any of its inputs changed (the stamp in dist/ names their hash; Vite empties dist/ on each build).
if [ "${WITH_BROWSER:-1}" = 1 ] && [ -f web/app/package-lock.json ]; then
  lock=$(sha256sum web/app/package-lock.json | cut -c1-16)
  if [ ! -f "web/app/node_modules/.installed-$lock" ]; then
    echo "[bootstrap] installing the web app's packages (npm ci)"
    (cd web/app && npm ci --silent --no-audit --no-fund) \
      || { echo "[bootstrap] error: npm ci failed in web/app (is the npm registry reachable?)" >&2; exit 1; }
    touch "web/app/node_modules/.installed-$lock"
  fi
  inputs=$( (cd web/app && find src scripts index.html package.json package-lock.json tsconfig.json vite.config.ts \
    ../sdk/vidplat-telemetry.js -type f -print0 | sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-16)
  if [ ! -f "web/app/dist/.built-$inputs" ]; then
    echo "[bootstrap] building the web app (npm run build in web/app)"
    (cd web/app && npm run --silent build) || { echo "[bootstrap] error: the web app did not build" >&2; exit 1; }
    touch "web/app/dist/.built-$inputs"
  fi
fi
echo "[bootstrap] ok"
