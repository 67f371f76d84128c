#!/bin/sh
# Installs the shmq C library: builds the release library, then installs
#   PREFIX/lib/libshmq.so.VERSION, the soname link libshmq.so.0, the
#   development link libshmq.so, the static libshmq.a,
#   PREFIX/include/shmq.h and shmq.hpp (the C++ wrapper),
#   PREFIX/lib/pkgconfig/shmq.pc
# so that `cc app.c $(pkg-config --cflags --libs shmq)` works.
#
# Usage: bindings/c/install.sh PREFIX        (e.g. /usr/local or $HOME/.local)
#   SHMQ_LIB_DIR=DIR  install libshmq.so and libshmq.a from DIR instead of
#                     building them (as the tests do).
#   SHMQ_KEEP_DEBUG=1 keep the debug information: the release profile builds
#                     it (about 6 MB of the shared library), and by default
#                     the installed libraries are stripped of it (`strip
#                     --strip-debug`; the symbols a program links against
#                     stay). Keep it to debug shmq itself in gdb or perf.
#
# With a PREFIX outside the loader's path, tell the tools where it is:
#   export PKG_CONFIG_PATH=PREFIX/lib/pkgconfig LD_LIBRARY_PATH=PREFIX/lib
set -eu

if [ $# -ne 1 ]; then
    echo "usage: $0 PREFIX" >&2
    exit 2
fi
mkdir -p "$1"
PREFIX=$(cd "$1" && pwd)
ROOT=$(cd "$(dirname "$0")/../.." && pwd)

if [ -n "${SHMQ_LIB_DIR:-}" ]; then
    SRC=$SHMQ_LIB_DIR
else
    echo "building the release library (cargo build --release -p shmq-c)..." >&2
    (cd "$ROOT" && cargo build --release -p shmq-c)
    SRC=${CARGO_TARGET_DIR:-$ROOT/target}/release
fi
for f in libshmq.so libshmq.a; do
    if [ ! -f "$SRC/$f" ]; then
        echo "$0: $SRC/$f is missing" >&2
        exit 1
    fi
done

VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$ROOT/Cargo.toml" | head -n 1)
install -d "$PREFIX/lib/pkgconfig" "$PREFIX/include"
install -m 0755 "$SRC/libshmq.so" "$PREFIX/lib/libshmq.so.$VERSION"
ln -sf "libshmq.so.$VERSION" "$PREFIX/lib/libshmq.so.0"
ln -sf "libshmq.so.0" "$PREFIX/lib/libshmq.so"
install -m 0644 "$SRC/libshmq.a" "$PREFIX/lib/libshmq.a"
install -m 0644 "$ROOT/include/shmq.h" "$PREFIX/include/shmq.h"
install -m 0644 "$ROOT/bindings/cpp/shmq.hpp" "$PREFIX/include/shmq.hpp"
if [ "${SHMQ_KEEP_DEBUG:-0}" = 0 ]; then
    if command -v strip >/dev/null 2>&1; then
        # --strip-debug, not --strip-all: the static library keeps the
        # symbols a program links against, the shared one its symbol table.
        strip --strip-debug "$PREFIX/lib/libshmq.so.$VERSION" "$PREFIX/lib/libshmq.a"
    else
        echo "$0: strip not found: the libraries keep their debug information" >&2
    fi
fi
sed -e "s|@PREFIX@|$PREFIX|g" -e "s|@VERSION@|$VERSION|g" \
    "$ROOT/bindings/c/shmq.pc.in" >"$PREFIX/lib/pkgconfig/shmq.pc"

# Refresh the loader's cache for system prefixes.
case "$PREFIX" in
/usr | /usr/local)
    if [ "$(id -u)" = 0 ] && command -v ldconfig >/dev/null 2>&1; then ldconfig; fi
    ;;
esac
echo "installed shmq $VERSION under $PREFIX" >&2
