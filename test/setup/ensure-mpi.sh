#!/usr/bin/env bash
# The data-parallel tests (test/train/distributed.test.ts) launch bin/train with Open MPI's mpirun. `npm test` runs
# this first so that a fresh machine needs no other set-up step; only the runtime is needed (dixie loads libmpi at
# run time and needs no MPI headers).
set -euo pipefail
if command -v mpirun >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "The data-parallel tests need Open MPI: run 'sudo apt-get install -y openmpi-bin' first." >&2
  exit 1
fi
echo "Installing Debian's openmpi-bin for the data-parallel tests..." >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq openmpi-bin >/dev/null
