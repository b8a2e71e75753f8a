#!/usr/bin/env bash
# `make image`: builds the one Dockerfile with podman, on the base of base.sh
# (or IMAGE_BASE, e.g. python:3.11-slim where a registry is reachable), tagged
# IMAGE (default externalip:<version in pyproject.toml>). The image is labelled
# with a hash of everything it is built from, so an unchanged tree costs
# seconds. Prints its size and installed packages; the image name is the last line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
export CONTAINERS_CONF="$here/containers.conf"
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$repo/pyproject.toml" | head -1)
IMAGE=${IMAGE:-localhost/externalip:$version}
log() { printf '[image %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
command -v podman >/dev/null || { log "podman is missing: make deps installs it"; exit 1; }
start=$SECONDS
base=${IMAGE_BASE:-$(bash "$here/base.sh")}

# the build's inputs, as .dockerignore lets them in, and the base's identity
hash=$( { cd "$repo" && find Dockerfile requirements.lock pyproject.toml README.md src -type f \
            -not -path '*/__pycache__/*' -not -path '*.egg-info/*' | LC_ALL=C sort \
            | xargs sha256sum; podman image inspect --format '{{.Id}}' "$base" 2>/dev/null \
            || echo "$base"; } | sha256sum | cut -c1-16)
have=$(podman image inspect --format '{{index .Labels "externalip.inputs"}}' "$IMAGE" 2>/dev/null || true)
if [ "$have" = "$hash" ]; then
  log "$IMAGE: up to date (inputs $hash)"
else
  log "$IMAGE: building on $base (inputs $hash)"
  ca=()
  for bundle in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt; do
    [ -s "$bundle" ] && { ca=(--secret "id=ca,src=$bundle"); break; }
  done
  # host network: the build reaches Debian and PyPI as this machine does,
  # and podman creates no bridge or NAT rules here
  old=$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
  podman build --quiet --network host --pull=never --layers --build-arg "BASE=$base" \
    "${ca[@]}" --label "externalip.inputs=$hash" -t "$IMAGE" -f "$repo/Dockerfile" "$repo" >/dev/null
  # the previous build, now untagged (its stages stay as the layer cache)
  [ -z "$old" ] || podman rmi "$old" >/dev/null 2>&1 || true
fi
size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
log "$IMAGE: $((size / 1000000)) MB, ready in $((SECONDS - start))s; Python packages:"
podman run --rm --network none --entrypoint python3 "$IMAGE" -c \
  'import importlib.metadata as m; print("\n".join(sorted(f"  {d.name}=={d.version}" for d in m.distributions())))' >&2
log "$(podman run --rm --network none --entrypoint dpkg-query "$IMAGE" -W | wc -l) Debian packages (dpkg-query -W)"
echo "$IMAGE"
