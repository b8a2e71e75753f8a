#!/usr/bin/env bash
# Builds MetalLB's controller and speaker from the Go module proxy (the version
# pinned in tools/metallb/go.mod) into a cache outside the checkout, keyed by
# version, so a second run costs nothing. Only bench/ uses them, to measure
# externalip side by side with MetalLB on the same lab.
#
# Why v0.15.2 and not the newest: v0.16.x requires frr-k8s v0.0.27, which the
# Go module proxy refuses to serve, so it cannot be built here.
#
# Prints the directory holding the binaries (and MetalLB's module source, for
# its CRDs) as its last two lines: binaries first, then the module directory.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
VERSION=$(sed -n 's/^require go.universe.tf\/metallb \(v[0-9.]*\)$/\1/p' "$here/metallb/go.mod")
[ -n "$VERSION" ] || { echo "[build-metallb] no metallb version in $here/metallb/go.mod" >&2; exit 1; }
CACHE=${EXTERNALIP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/externalip}
out="$CACHE/metallb-${VERSION}"
mkdir -p "$out"
log() { printf '[build-metallb %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

build() { # name (controller or speaker)
  local name=$1
  if [ -x "$out/$name" ]; then log "$name: cached in $out"; return; fi
  log "$name ${VERSION}: building (a cold build takes a few minutes; progress below)"
  local start=$SECONDS
  # go build -v names each package it compiles: print a running count so the
  # build visibly moves without flooding the terminal.
  ( cd "$here/metallb" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -v -trimpath \
      -o "$out/$name.tmp" -ldflags "-s -w" "go.universe.tf/metallb/$name" ) 2>&1 \
    | awk -v what="$name" '{ n++; if (n % 100 == 0) { printf "[build-metallb] %s: %d packages compiled\n", what, n > "/dev/stderr"; fflush("/dev/stderr") } }
           END { printf "[build-metallb] %s: %d packages compiled\n", what, n > "/dev/stderr" }'
  [ "${PIPESTATUS[0]}" -eq 0 ] || { log "$name: build failed"; exit 1; }
  mv "$out/$name.tmp" "$out/$name"
  log "$name: built in $((SECONDS - start))s"
}

build controller
build speaker
# The module source holds the CRDs (config/crd/bases) the lab installs.
moddir=$(cd "$here/metallb" && GOFLAGS=-mod=mod go list -m -f '{{.Dir}}' go.universe.tf/metallb)
echo "$out"
echo "$moddir"
