#!/usr/bin/env bash
# Builds the image herald-test/haproxy:2.6 from Debian's haproxy, without a registry: the
# binary and every library ldd lists go into a root filesystem for `docker import`. It runs
# like the official haproxy image (the compose cluster's load balancer, deploy/compose.yaml):
# configuration in /usr/local/etc/haproxy/haproxy.cfg, user haproxy, master-worker mode in
# the foreground.
#
# Usage: scripts/images/build-haproxy.sh [image-name]   (needs haproxy and docker)
set -euo pipefail
image="${1:-herald-test/haproxy:2.6}"

bin=/usr/sbin/haproxy
[ -x "$bin" ] || { echo "build-haproxy: $bin is missing (apt-get install haproxy)" >&2; exit 1; }

root="$(mktemp -d /tmp/herald-haproxy-image.XXXXXX)"
trap 'rm -rf "$root"' EXIT

. "$(dirname "$0")/rootfs.sh"
copy_with_libs "$bin"
mkdir -p "$root/usr/local/etc/haproxy" "$root/var/lib/haproxy" "$root/etc" "$root/tmp"
chmod 1777 "$root/tmp"
printf 'root:x:0:0:root:/root:/bin/sh\nhaproxy:x:99:99:haproxy:/var/lib/haproxy:/usr/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nhaproxy:x:99:\n' >"$root/etc/group"

tar -C "$root" --owner=0 --group=0 --numeric-owner -c . | docker import \
    --change 'CMD ["/usr/sbin/haproxy", "-W", "-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]' \
    --change 'USER haproxy' \
    --change 'WORKDIR /var/lib/haproxy' \
    - "$image" >/dev/null
echo "built $image ($(haproxy -v | head -1 | awk '{print $3}'))"
