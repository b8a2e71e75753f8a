#!/usr/bin/env bash
# Builds kube-score from the Go module proxy (the version pinned in
# tools/kube-score/go.mod) into a cache outside the checkout, keyed by version,
# so a second run costs nothing. `make lint` runs it on the rendered chart.
# Prints the path of the binary as its last line.
#
# Why kube-score and not kube-linter: the Go module proxy here refuses
# golang.stackrox.io/kube-linter (and github.com/stackrox/kube-linter) with
# "403 Forbidden: Go module fetches are limited to the module-host allowlist",
# so kube-linter cannot be built on this machine. The chart still carries
# kube-linter's ignore-check annotations for users who run it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
VERSION=$(sed -n 's/^require github.com\/zegl\/kube-score \(v[0-9.]*\)$/\1/p' "$here/kube-score/go.mod")
[ -n "$VERSION" ] || { echo "[build-kube-score] no version in $here/kube-score/go.mod" >&2; exit 1; }
CACHE=${EXTERNALIP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/externalip}
out="$CACHE/kube-score-${VERSION}"
log() { printf '[build-kube-score %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if [ -x "$out/kube-score" ]; then
  log "kube-score: cached in $out"
  echo "$out/kube-score"
  exit 0
fi
mkdir -p "$out"
log "kube-score ${VERSION}: building (about a minute cold)"
start=$SECONDS
( cd "$here/kube-score" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -o "$out/kube-score.tmp" \
    -ldflags "-s -w -X main.version=${VERSION}" github.com/zegl/kube-score/cmd/kube-score ) \
  || { log "kube-score: build failed"; exit 1; }
mv "$out/kube-score.tmp" "$out/kube-score"
log "kube-score: built in $((SECONDS - start))s"
echo "$out/kube-score"
