#!/usr/bin/env bash
# The web-page tests drive Debian's Chromium through playwright-core (a browser download is not possible
# here). `npm test` runs this first so that a fresh machine needs no other set-up step.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "The web-page tests need Chromium: run 'sudo apt-get install -y chromium' first." >&2
  exit 1
fi
echo "Installing Debian's chromium for the web-page tests..." >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq chromium >/dev/null
