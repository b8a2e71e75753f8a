#!/usr/bin/env bash
# Builds kube-apiserver, kubectl, kube-proxy and etcd from the Go module proxy into a cache
# outside the checkout, keyed by version, so a second run costs nothing.
# Prints the directory holding the binaries as its last line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
K8S_VERSION=$(sed -n 's/^require k8s.io\/kubernetes \(v[0-9.]*\)$/\1/p' "$here/k8s/go.mod")
ETCD_VERSION=$(sed -n 's/^require go.etcd.io\/etcd\/server\/v3 \(v[0-9.]*\)$/\1/p' "$here/etcd/go.mod")
CACHE=${EXTERNALIP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/externalip}
out="$CACHE/k8s-${K8S_VERSION}-etcd-${ETCD_VERSION}"
mkdir -p "$out"

log() { printf '[build-k8s %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# go build -v names each package as it compiles it; print a running count so
# a 15-minute cold build visibly moves without flooding the terminal.
progress() {
  awk -v what="$1" '{ n++; if (n % 100 == 0) { printf "[build-k8s] %s: %d packages compiled\n", what, n > "/dev/stderr"; fflush("/dev/stderr") } }
                    END { printf "[build-k8s] %s: %d packages compiled\n", what, n > "/dev/stderr" }'
}

build() { # module-dir package output-name
  local dir=$1 pkg=$2 name=$3
  if [ -x "$out/$name" ]; then log "$name: cached in $out"; return; fi
  log "$name: building $pkg (cold builds take minutes; progress below)"
  local start=$SECONDS major minor
  major=1; minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  ( cd "$here/$dir" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -v -trimpath -o "$out/$name.tmp" \
      -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=${K8S_VERSION} \
                -X k8s.io/component-base/version.gitMajor=${major} \
                -X k8s.io/component-base/version.gitMinor=${minor} \
                -X k8s.io/client-go/pkg/version.gitVersion=${K8S_VERSION} \
                -X k8s.io/client-go/pkg/version.gitMajor=${major} \
                -X k8s.io/client-go/pkg/version.gitMinor=${minor}" \
      "$pkg" ) 2>&1 | progress "$name"
  [ "${PIPESTATUS[0]}" -eq 0 ] || { log "$name: build failed"; exit 1; }
  mv "$out/$name.tmp" "$out/$name"
  log "$name: built in $((SECONDS - start))s"
}

build etcd externalip.local/tools/etcd etcd
build k8s k8s.io/kubernetes/cmd/kube-apiserver kube-apiserver
build k8s k8s.io/kubernetes/cmd/kubectl kubectl
build k8s k8s.io/kubernetes/cmd/kube-proxy kube-proxy
echo "$out"
