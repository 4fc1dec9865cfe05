#!/usr/bin/env bash
# Build the small local Python base image the Docker tests use instead of a registry's python image.
#
#   tests/infra/base-image.sh [TAG]      (default mbctl-test/python-base:bookworm)
#
# Debian bookworm (minbase + python3, pip, venv, ca-certificates) made with debootstrap from this
# machine's own apt mirror, then `docker import`ed. Nothing is pulled from a container registry.
# Cached twice: skipped when TAG exists in the engine; the rootfs tarball is kept under
# $MBCTL_CACHE/base-image/ so a fresh engine re-imports it in seconds instead of re-bootstrapping.
set -euo pipefail

TAG=${1:-mbctl-test/python-base:bookworm}
SUITE=${MBCTL_BASE_SUITE:-bookworm}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE=${MBCTL_CACHE:-$ROOT/.cache}/base-image
TARBALL=$CACHE/$(echo "$TAG" | tr '/:' '__').tar

if docker image inspect "$TAG" >/dev/null 2>&1; then
  exit 0
fi

import_tarball() {
  docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    --change "LABEL org.opencontainers.image.title=$TAG org.opencontainers.image.description=debootstrap-$SUITE" \
    "$TARBALL" "$TAG" >/dev/null
  echo "base-image: imported $TAG from $TARBALL" >&2
}

if [[ -f $TARBALL ]]; then
  import_tarball
  exit 0
fi

# The first Debian mirror of this machine's apt sources (deb822 *.sources or one-line *.list).
mirror() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f $f ]] || continue
    awk -v suite="$SUITE" '
      /^[[:space:]]*$/ { if (uri != "" && hit) { print uri; exit } uri = ""; hit = 0; next }
      /^URIs:/ { uri = $2 }
      /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) hit = 1 }
      END { if (uri != "" && hit) print uri }' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f $f ]] || continue
    awk -v suite="$SUITE" '$1 == "deb" && $0 !~ /^#/ {
      for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i ~ /:\/\//) { if ($(i + 1) == suite) print $i; break }
    }' "$f"
  done
}
MIRROR=${MBCTL_DEBIAN_MIRROR:-$(mirror | head -n 1)}
if [[ -z $MIRROR ]]; then
  echo "base-image: no '$SUITE' mirror in /etc/apt/sources.list{,.d/}; set MBCTL_DEBIAN_MIRROR" >&2
  exit 1
fi
command -v debootstrap >/dev/null || { echo "base-image: debootstrap is not installed" >&2; exit 1; }

mkdir -p "$CACHE"
WORK=$(mktemp -d "$CACHE/rootfs.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
echo "base-image: debootstrap $SUITE from $MIRROR (log: $CACHE/debootstrap.log)" >&2
if ! debootstrap --variant=minbase \
  --include=python3,python3-pip,python3-venv,ca-certificates \
  "$SUITE" "$WORK/rootfs" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1; then
  echo "base-image: debootstrap failed; last lines of $CACHE/debootstrap.log:" >&2
  tail -n 20 "$CACHE/debootstrap.log" >&2
  exit 1
fi
# What an image does not need: package caches, docs and man pages (about a third of the size).
rm -rf "$WORK"/rootfs/var/cache/apt/archives/*.deb "$WORK"/rootfs/var/lib/apt/lists/* \
  "$WORK"/rootfs/usr/share/doc/* "$WORK"/rootfs/usr/share/man/* "$WORK"/rootfs/usr/share/info/*
tar --numeric-owner -C "$WORK/rootfs" -cf "$TARBALL.part" .
mv "$TARBALL.part" "$TARBALL"
import_tarball
