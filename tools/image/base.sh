#!/usr/bin/env bash
# The image's default base: Debian bookworm with python3, made from Debian
# packages with mmdebstrap (no registry needed), cached as a tarball outside the
# checkout and imported as a local image. Prints the base image's name.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export CONTAINERS_CONF="$here/containers.conf"
SUITE=${IMAGE_SUITE:-bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
NAME="localhost/externalip-base:$SUITE"
CACHE=${EXTERNALIP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/externalip}/image
tarball="$CACHE/base-$SUITE.tar"
log() { printf '[image-base %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if podman image exists "$NAME"; then
  log "$NAME: present"
  echo "$NAME"; exit 0
fi
mkdir -p "$CACHE"
if [ ! -s "$tarball" ]; then
  command -v mmdebstrap >/dev/null || { log "mmdebstrap is missing: make deps installs it"; exit 1; }
  log "$SUITE + python3 from $MIRROR with mmdebstrap (about a minute)"
  start=$SECONDS
  mmdebstrap --quiet --format=tar --variant=apt --include=python3 \
    --aptopt='APT::Install-Recommends "false"' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
    "$SUITE" "$tarball.tmp" "$MIRROR"
  mv "$tarball.tmp" "$tarball"
  log "rootfs made in $((SECONDS - start))s: $tarball"
fi
podman import --quiet --change 'CMD ["/bin/bash"]' "$tarball" "$NAME" >/dev/null
log "$NAME: imported from $tarball"
echo "$NAME"
