#!/usr/bin/env bash
# What the Node.js sections of bench/gpu.sh (bench/gpu_node.sh) need on a GPU machine that has no Node.js, no
# Open MPI and no way to fetch them: packed on a machine that has them and a package registry, into a folder that
# travels with the repository.
#
#   bash bench/gpu_kit.sh pack [DIR]     here, into DIR (default .gpu-kit, which git ignores):
#       node.xz              the Node.js binary that runs this script (the GPU machine must run it too: Linux x86-64)
#       node_modules.tar.xz  the package's dependencies, without the development ones (npm ci --omit=dev)
#       dist.tar.xz          the compiled TypeScript, and dist.sha256: the sources it was compiled from
#       commit               their commit (git describe), for a GPU machine's copy that has no .git
#       openmpi.tar.xz       Debian's Open MPI with the libraries it loads beyond the C and C++ runtimes, unpacked
#                            (where apt-get is; without it the data-parallel section says SKIP there)
#   eval "$(bash bench/gpu_kit.sh unpack [DIR])"
#                            there: what the machine lacks of node and Open MPI into $TMPDIR/dixie-gpu-kit, the
#                            dependencies and dist into the repository where it has none; prints the environment that
#                            finds them. A kit whose dist was compiled from other sources than the repository's is
#                            refused: pack it again.
set -euo pipefail
cd "$(dirname "$0")/.."

# Open MPI 4's runtime and what its libraries and components link beyond libc, libstdc++ and zlib; hwloc's optional
# plugins (X11, OpenCL, NVML probes) stay out.
OPENMPI_PACKAGES=(openmpi-bin openmpi-common libopenmpi3 libhwloc15 libevent-core-2.1-7 libevent-pthreads-2.1-7
  libpmix2 libfabric1 libucx0 libibverbs1 ibverbs-providers librdmacm1 libpsm2-2 libpsm-infinipath1 libnl-3-200
  libnl-route-3-200 libnuma1 libmunge2 libudev1 libatomic1)

# A digest of everything tsc compiles (tsconfig.json's include) and of its settings.
sources_digest() {
  { echo tsconfig.json package.json; find lib bin test bench -name '*.ts'; } | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1
}

pack() {
  local kit=${1:-.gpu-kit}
  local stage
  stage=$(mktemp -d "${TMPDIR:-/tmp}/dixie-gpu-kit-pack-XXXX")
  trap "rm -rf '$stage'" EXIT
  mkdir -p "$kit"
  echo "node $(node --version): $(command -v node)"
  xz -T0 -6 -c "$(command -v node)" >"$kit/node.xz"

  echo "dependencies (npm ci --omit=dev)"
  cp package.json package-lock.json "$stage/"
  (cd "$stage" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error)
  tar -C "$stage" -cJf "$kit/node_modules.tar.xz" node_modules

  echo "dist (tsc)"
  npx tsc -p tsconfig.json --outDir "$stage/dist"
  tar -C "$stage" -cJf "$kit/dist.tar.xz" dist
  sources_digest >"$kit/dist.sha256"
  git describe --always --dirty >"$kit/commit" 2>/dev/null || echo unknown >"$kit/commit"

  rm -f "$kit/openmpi.tar.xz"
  if command -v apt-get >/dev/null; then
    echo "Open MPI (apt-get download)"
    mkdir "$stage/debs" "$stage/openmpi"
    (cd "$stage/debs" && apt-get download "${OPENMPI_PACKAGES[@]}" >/dev/null 2>&1) ||
      { echo "apt-get download ${OPENMPI_PACKAGES[*]} failed"; exit 1; }
    for deb in "$stage"/debs/*.deb; do dpkg-deb -x "$deb" "$stage/openmpi"; done
    rm -rf "$stage/openmpi/usr/share/doc" "$stage/openmpi/usr/share/man"
    ln -s orterun "$stage/openmpi/usr/bin/mpirun"  # the alternatives link that the package's install script makes
    tar -C "$stage" -cJf "$kit/openmpi.tar.xz" openmpi
  else
    echo "no apt-get here: the kit has no Open MPI"
  fi
  du -sh "$kit"/*
}

# FILE.xz to standard output: with xz, or Python's lzma where a minimal system has no xz.
xz_cat() {
  if command -v xz >/dev/null; then xz -dc "$1"
  else python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), sys.stdout.buffer)' "$1"
  fi
}

unpack() {
  local kit=${1:-.gpu-kit}
  local home=${TMPDIR:-/tmp}/dixie-gpu-kit
  [ -f "$kit/node.xz" ] || { echo "no kit in $kit: pack one with bash bench/gpu_kit.sh pack" >&2; exit 1; }
  if [ "$(cat "$kit/dist.sha256")" != "$(sources_digest)" ]; then
    echo "the kit in $kit was compiled from other sources than these: pack it again (bash bench/gpu_kit.sh pack)" >&2
    exit 1
  fi
  [ -d node_modules ] || xz_cat "$kit/node_modules.tar.xz" | tar -x
  [ -d dist ] || xz_cat "$kit/dist.tar.xz" | tar -x
  if ! command -v node >/dev/null; then
    mkdir -p "$home/bin"
    xz_cat "$kit/node.xz" >"$home/bin/node"
    chmod +x "$home/bin/node"
    echo "export PATH=\"$home/bin:\$PATH\""
  fi
  if ! command -v mpirun >/dev/null && [ -f "$kit/openmpi.tar.xz" ]; then
    rm -rf "$home/openmpi"
    xz_cat "$kit/openmpi.tar.xz" | tar -C "$home" -x
    # Open MPI and PMIx find their components and help texts from these prefixes, not from where they were built
    # for; the ranks find libmpi on the library path.
    local usr=$home/openmpi/usr lib=$home/openmpi/usr/lib/x86_64-linux-gnu
    echo "export PATH=\"$usr/bin:\$PATH\" OPAL_PREFIX=\"$usr\" OPAL_SYSCONFDIR=\"$home/openmpi/etc/openmpi\"" \
      "PMIX_PKGLIBDIR=\"$lib/pmix2/lib/pmix\" PMIX_PKGDATADIR=\"$lib/pmix2/share/pmix\" LD_LIBRARY_PATH=\"$lib:$lib/openmpi/lib:$lib/pmix2/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}\""
  fi
}

case "${1:-}" in
  pack) pack "${2:-}" ;;
  unpack) unpack "${2:-}" ;;
  *) sed -n '2,17p' "$0" >&2; exit 2 ;;
esac
