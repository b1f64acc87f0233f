# Sourced by the image scripts of this folder: helpers that fill a root filesystem for
# `docker import` from files of this machine. The caller sets `root` (the folder).

# Copies a file into the root at the same path, following symlinks.
copy() {
    mkdir -p "$root$(dirname "$1")"
    cp -L "$1" "$root$1"
}

# The absolute paths of the libraries (and the loader) a binary needs: ldd prints
# "name => /path (addr)" for libraries and "/path (addr)" for the loader.
libs_of() {
    ldd "$1" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'
}

# Copies each binary given and every library it needs into the root at the same paths.
copy_with_libs() {
    local bin lib
    for bin in "$@"; do
        copy "$bin"
        for lib in $(libs_of "$bin"); do
            [ -e "$root$lib" ] || copy "$lib"
        done
    done
}
