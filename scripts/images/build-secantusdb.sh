#!/usr/bin/env bash
# Builds the image herald-test/secantusdb:<version>, a MongoDB-wire server (SecantusDB from
# PyPI), without a registry: Debian's python3.11 and its standard library, the pinned packages
# of secantusdb-requirements.txt (pip --target), a launcher, and every library ldd lists for
# the interpreter and the extension modules go into a root filesystem for `docker import`.
#
# Debian's interpreter, not pyenv's or a venv's: the image needs a python whose libraries are
# all in system paths that ldd resolves (pyenv's python3 is a shim script).
#
# Usage: scripts/images/build-secantusdb.sh [image-name]
#        (needs python3.11, python3-pip and docker)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
version="$(sed -n 's/^secantusdb==//p' "$here/secantusdb-requirements.txt")"
image="${1:-herald-test/secantusdb:$version}"

py=/usr/bin/python3.11
[ -x "$py" ] || { echo "build-secantusdb: $py is missing (apt-get install python3.11)" >&2; exit 1; }
"$py" -m pip --version >/dev/null 2>&1 ||
    { echo "build-secantusdb: pip for $py is missing (apt-get install python3-pip)" >&2; exit 1; }

root="$(mktemp -d /tmp/herald-secantusdb-image.XXXXXX)"
trap 'rm -rf "$root"' EXIT
site=/opt/secantus/site-packages

. "$here/rootfs.sh"

copy "$py"
mkdir -p "$root/usr/lib"
tar -C /usr/lib --exclude='python3.11/test' --exclude='python3.11/tkinter' \
    --exclude='python3.11/idlelib' --exclude='python3.11/ensurepip' \
    --exclude='python3.11/site-packages' --exclude='python3.11/dist-packages' \
    --exclude='__pycache__' -c python3.11 | tar -C "$root/usr/lib" -x

PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore "$py" -m pip install \
    --quiet --no-compile --no-warn-script-location --only-binary=:all: \
    --target "$root$site" -r "$here/secantusdb-requirements.txt" ||
    { echo "build-secantusdb: pip install failed" >&2; exit 1; }

# Libraries of the interpreter and of every extension module (their own bundled .libs
# folders resolve through rpath and are already inside site-packages).
{
    libs_of "$py"
    find "$root/usr/lib/python3.11" "$root$site" -name '*.so*' -type f | while read -r so; do
        libs_of "$so"
    done
} | sort -u | while read -r lib; do
    case "$lib" in "$root"*) continue ;; esac
    [ -e "$root$lib" ] || copy "$lib"
done

mkdir -p "$root/usr/local/bin" "$root/tmp" "$root/data"
chmod 1777 "$root/tmp"
cat >"$root/usr/local/bin/secantusd" <<LAUNCHER
#!/usr/bin/python3.11 -sE
import sys
sys.path.insert(0, "$site")
from secantus.cli import main
sys.exit(main())
LAUNCHER
chmod +x "$root/usr/local/bin/secantusd"

# --standalone: otherwise it announces a one-member replica set at its bind address, and a
# driver outside the container follows that address (see ../../shared/DEPENDENCIES.md).
tar -C "$root" -c . | docker import \
    --change 'CMD ["/usr/local/bin/secantusd", "--host", "0.0.0.0", "--port", "27017", "--storage-path", ":memory:", "--standalone"]' \
    --change 'EXPOSE 27017' \
    --change 'WORKDIR /data' \
    --change 'ENV LANG=C.UTF-8' \
    - "$image" >/dev/null
echo "built $image"
