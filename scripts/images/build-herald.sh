#!/usr/bin/env bash
# Builds Herald's runtime image without a registry: the same image as the Dockerfile's
# runtime stage, from parts on this machine. The binary (debug information stripped), every
# library ldd lists for it, bash and its libraries (for the health check), the CA certificates,
# /etc/passwd and /etc/group with the user herald (10001) and /data owned by it go into a root
# filesystem that `docker import` turns into a base image; `docker build` then applies the
# Dockerfile's "image settings" lines to it verbatim (ENV, EXPOSE, VOLUME, USER, HEALTHCHECK,
# ENTRYPOINT ...), so the two images cannot drift apart.
#
# Usage: scripts/images/build-herald.sh [--binary PATH] [image-name]
#   --binary PATH  use this herald binary (the tests pass their own debug build);
#                  default: `cargo build --release --locked -p herald` and its binary
#   image-name     default herald:latest
# Needs docker, a glibc host with the binary's libraries (Debian 12 here), bash, and the CA
# bundle /etc/ssl/certs/ca-certificates.crt (apt-get install ca-certificates).
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"

binary=""
image="herald:latest"
while [ $# -gt 0 ]; do
    case "$1" in
    --binary) binary="${2:?--binary needs a path}"; shift 2 ;;
    -h | --help) sed -n '2,16p' "$0"; exit 0 ;;
    -*) echo "build-herald: unknown option $1" >&2; exit 2 ;;
    *) image="$1"; shift ;;
    esac
done
if [ -z "$binary" ]; then
    (cd "$repo" && cargo build --release --locked -p herald)
    binary="$repo/target/release/herald"
fi
[ -x "$binary" ] || { echo "build-herald: $binary is not an executable" >&2; exit 1; }
certs=/etc/ssl/certs/ca-certificates.crt
[ -f "$certs" ] || { echo "build-herald: $certs is missing (apt-get install ca-certificates)" >&2; exit 1; }

work="$(mktemp -d /tmp/herald-image.XXXXXX)"
trap 'rm -rf "$work"' EXIT
root="$work/root"
mkdir -p "$root"

. "$repo/scripts/images/rootfs.sh"

mkdir -p "$root/usr/local/bin"
objcopy --strip-debug "$binary" "$root/usr/local/bin/herald" 2>/dev/null || cp -L "$binary" "$root/usr/local/bin/herald"
cp "$repo/deploy/docker/healthcheck" "$root/usr/local/bin/herald-healthcheck"
for lib in $(libs_of "$binary"); do copy "$lib"; done
copy_with_libs /bin/bash
copy "$certs"
mkdir -p "$root/etc" "$root/tmp"
chmod 1777 "$root/tmp"
printf 'root:x:0:0:root:/root:/bin/bash\nherald:x:10001:10001:herald:/data:/usr/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nherald:x:10001:\n' >"$root/etc/group"

# Everything owned by root, /data by herald (a new named volume copies that ownership).
mkdir -p "$work/owned/data"
tar -C "$root" --owner=0 --group=0 --numeric-owner -cf "$work/rootfs.tar" .
tar -C "$work/owned" --owner=10001 --group=10001 --numeric-owner -rf "$work/rootfs.tar" ./data

# The image the name points at now: replaced by the new one, it is removed below.
previous="$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)"
base="herald-rootfs-$$:build"
docker import "$work/rootfs.tar" "$base" >/dev/null
settings="$(sed -n '/^# -- image settings/,/^# -- end of image settings/p' "$repo/Dockerfile")"
[ -n "$settings" ] || { echo "build-herald: no image settings block in $repo/Dockerfile" >&2; exit 1; }
# The classic builder: it uses the local base image as it is, without asking a registry.
printf 'FROM %s\n%s\n' "$base" "$settings" | DOCKER_BUILDKIT=0 docker build -q -t "$image" - >"$work/build.log" 2>&1 ||
    { cat "$work/build.log" >&2; docker rmi "$base" >/dev/null 2>&1; echo "build-herald: docker build failed" >&2; exit 1; }
docker rmi "$base" >/dev/null
if [ -n "$previous" ] && [ "$previous" != "$(docker image inspect -f '{{.Id}}' "$image")" ]; then
    docker rmi "$previous" >/dev/null 2>&1 || true # still used by a container: kept
fi
echo "built $image ($("$binary" --version))"
