#!/usr/bin/env bash
# Builds helm from the Go module proxy (the version pinned in tools/helm/go.mod)
# into a cache outside the checkout, keyed by version, so a second run costs
# nothing. Prints the path of the helm binary as its last line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
HELM_VERSION=$(sed -n 's/^require helm.sh\/helm\/v3 \(v[0-9.]*\)$/\1/p' "$here/helm/go.mod")
[ -n "$HELM_VERSION" ] || { echo "[build-helm] no helm version in $here/helm/go.mod" >&2; exit 1; }
CACHE=${EXTERNALIP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/externalip}
out="$CACHE/helm-${HELM_VERSION}"
log() { printf '[build-helm %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if [ -x "$out/helm" ]; then
  log "helm: cached in $out"
  echo "$out/helm"
  exit 0
fi
mkdir -p "$out"
log "helm ${HELM_VERSION}: building (a cold build takes a few minutes; progress below)"
start=$SECONDS
# go build -v names each package it compiles: print a running count so the
# build visibly moves without flooding the terminal.
( cd "$here/helm" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -v -trimpath -o "$out/helm.tmp" \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}" \
    helm.sh/helm/v3/cmd/helm ) 2>&1 \
  | awk '{ n++; if (n % 100 == 0) { printf "[build-helm] %d packages compiled\n", n > "/dev/stderr"; fflush("/dev/stderr") } }
         END { printf "[build-helm] %d packages compiled\n", n > "/dev/stderr" }'
[ "${PIPESTATUS[0]}" -eq 0 ] || { log "helm: build failed"; exit 1; }
mv "$out/helm.tmp" "$out/helm"
log "helm: built in $((SECONDS - start))s"
echo "$out/helm"
