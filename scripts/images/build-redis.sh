#!/usr/bin/env bash
# Builds the image herald-test/redis:7.0 from Debian's redis-server, without a registry:
# the binary and every library ldd lists go into a root filesystem that `docker import` turns
# into an image (about 18 MB, starts in ~0.3 s, logs "Ready to accept connections").
#
# Usage: scripts/images/build-redis.sh [image-name]   (needs redis-server and docker)
set -euo pipefail
image="${1:-herald-test/redis:7.0}"

bin=/usr/bin/redis-server
[ -x "$bin" ] || { echo "build-redis: $bin is missing (apt-get install redis-server)" >&2; exit 1; }

root="$(mktemp -d /tmp/herald-redis-image.XXXXXX)"
trap 'rm -rf "$root"' EXIT

. "$(dirname "$0")/rootfs.sh"
copy_with_libs "$bin"
mkdir -p "$root/data" "$root/tmp"
chmod 1777 "$root/tmp"

# Listen on every interface of the container (the port is mapped to the host's loopback),
# no persistence, no protected mode (there is no password in tests).
tar -C "$root" -c . | docker import \
    --change 'CMD ["/usr/bin/redis-server", "--bind", "0.0.0.0", "--protected-mode", "no", "--save", "", "--appendonly", "no"]' \
    --change 'EXPOSE 6379' \
    --change 'WORKDIR /data' \
    - "$image" >/dev/null
echo "built $image ($(redis-server --version | awk '{print $3}'))"
