#!/usr/bin/env bash
# ensure-package.sh <command> <Debian package> <the tests that need it>: installs the package when the command is
# missing, so that `npm test` (which runs this first) needs no other set-up step on a fresh machine. The web-page
# tests drive Debian's chromium through playwright-core (no browser download is possible here); the data-parallel
# tests launch bin/train with Open MPI's mpirun (only the runtime: dixie loads libmpi at run time).
set -euo pipefail
command=$1 package=$2 purpose=$3
if command -v "$command" >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "The $purpose need $package: run 'sudo apt-get install -y $package' first." >&2
  exit 1
fi
echo "Installing Debian's $package for the $purpose..." >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq "$package" >/dev/null
