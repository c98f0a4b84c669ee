#!/usr/bin/env bash
# Prints a directory on a file system that shares blocks between files (reflinks): an XFS image
# mounted through a loop device, made on first use. Needs root and xfsprogs.
# Usage: scripts/reflink-dir.sh [image size, default 8G]
set -euo pipefail
size="${1:-8G}"
img=/var/tmp/strata-reflink.img
mnt=/mnt/strata-reflink
if mountpoint -q "$mnt"; then
  echo "$mnt"
  exit 0
fi
[ "$(id -u)" = 0 ] || { echo "reflink-dir: needs root to mount an image" >&2; exit 1; }
command -v mkfs.xfs >/dev/null || { echo "reflink-dir: mkfs.xfs missing (xfsprogs)" >&2; exit 1; }
if [ ! -f "$img" ]; then
  truncate -s "$size" "$img"
  mkfs.xfs -q -m reflink=1 "$img"
fi
mkdir -p "$mnt"
mount -o loop "$img" "$mnt"
if ! xfs_info "$mnt" | grep -q "reflink=1"; then
  echo "reflink-dir: $mnt does not have reflinks" >&2
  exit 1
fi
echo "$mnt"
