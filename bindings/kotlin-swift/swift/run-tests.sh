#!/usr/bin/env bash
# Compiles the Swift bindings (the generated MeridianFFI.swift, the Meridian adapter and the
# XCTest cases in Tests/MeridianTests) with swiftc and runs the test program against a real
# devserver on loopback.
#
# There is no swiftc for Debian 12: Debian trixie's `swiftlang` runs in a chroot kept in
# target/swift-root (created on the first run: about 1.5 minutes and 2.6 GB; reused after). The repository
# is bind-mounted into the chroot at its own path, so every path is the same inside and out;
# the test program starts the devserver (target/debug/devserver) inside the chroot itself.
#
# Needs root (debootstrap, chroot, mount), the native library and the devserver:
#   cargo build -p meridian-ffi --lib && cargo build -p devserver
# Exits non-zero when the build or any scenario fails.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../../.." && pwd)"
ROOT="${MERIDIAN_SWIFT_ROOT:-$REPO/target/swift-root}"
SUITE="trixie"
MIRROR="http://deb.debian.org/debian"
BUILD="$REPO/target/swift-build"
LIB_DIR="$REPO/target/debug"
FFI_C_DIR="$HERE/Sources/MeridianFFIFFI"
SWIFT_FLAGS=(-swift-version 5 -Onone -g
    -Xcc "-fmodule-map-file=$FFI_C_DIR/module.modulemap" -I "$FFI_C_DIR")
TEST_TIMEOUT="${MERIDIAN_SWIFT_TEST_TIMEOUT:-300}"

phase() { printf '== swift: %s\n' "$*"; }
fail() { printf 'swift: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }

[ "$(id -u)" = 0 ] || fail "needs root (debootstrap, chroot and mount)"
for file in "$LIB_DIR/libmeridian_ffi.so" "$LIB_DIR/devserver"; do
    [ -f "$file" ] || fail "$file is missing: cargo build -p meridian-ffi --lib && cargo build -p devserver"
done

mkdir -p "$REPO/target"
exec 9>"$REPO/target/swift-root.lock"
flock 9 # one run at a time: the chroot and its mounts are shared

# ---------------------------------------------------------------------------------------
# Mounts, and their cleanup on any exit
# ---------------------------------------------------------------------------------------

MOUNTS=() # mounted by this run, in order
DEVSERVER_PIDS="$BUILD/devserver.pids"

mounted() { findmnt -rn -o TARGET | grep -qxF "$1"; }

# Mounts (unless a run that was killed left it mounted) and records it for the cleanup.
mount_at() { # mount_at TARGET MOUNT-ARGS...
    local target="$1" known
    shift
    mounted "$target" || mount "$@" "$target"
    for known in "${MOUNTS[@]}"; do [ "$known" != "$target" ] || return 0; done
    MOUNTS+=("$target")
}

mount_in() { # mount_in ROOT: /proc, /dev and the repository at its own path
    local root="$1"
    mkdir -p "$root/proc" "$root/dev" "$root$REPO"
    mount_at "$root/proc" -t proc proc
    mount_at "$root/dev" --bind /dev
    mount_at "$root$REPO" --bind "$REPO"
    cp -L /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
}

stop_devservers() { # whatever devserver the test program left running (it records each pid)
    [ -f "$DEVSERVER_PIDS" ] || return 0
    local pid
    while read -r pid; do
        [ -n "$pid" ] || continue
        if grep -qa devserver "/proc/$pid/cmdline" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done <"$DEVSERVER_PIDS"
    rm -f "$DEVSERVER_PIDS"
}

cleanup() {
    local status=$?
    stop_devservers
    local i
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
        umount "${MOUNTS[i]}" 2>/dev/null || umount -l "${MOUNTS[i]}" ||
            printf 'swift: could not unmount %s\n' "${MOUNTS[i]}" >&2
    done
    MOUNTS=()
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
stop_devservers # left by a run that was killed

# ---------------------------------------------------------------------------------------
# 1. The chroot (skipped when swiftc is there)
# ---------------------------------------------------------------------------------------

# No ca-certificates on purpose: the SDK carries its own roots and must start without a
# system trust store.
PACKAGES=(swiftlang libc6-dev)
chroot_ready() { [ -x "$ROOT/usr/bin/swiftc" ]; }

if chroot_ready; then
    phase "chroot $ROOT (reused)"
else
    started="$(now)"
    if [ ! -f "$ROOT/.debootstrap-done" ]; then
        phase "creating the $SUITE chroot in $ROOT"
        if findmnt -rn -o TARGET | grep -qE "^$ROOT(/|\$)"; then
            fail "something is still mounted under $ROOT: unmount it first"
        fi
        rm -rf "$ROOT"
        if ! command -v debootstrap >/dev/null; then
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
        fi
        debootstrap --variant=minbase "$SUITE" "$ROOT" "$MIRROR" >"$REPO/target/swift-debootstrap.log" 2>&1 ||
            { tail -20 "$REPO/target/swift-debootstrap.log" >&2; fail "debootstrap failed (log: target/swift-debootstrap.log)"; }
        touch "$ROOT/.debootstrap-done"
    fi
    phase "installing ${PACKAGES[*]} in the chroot"
    mount_in "$ROOT"
    chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
        sh -c "apt-get update -qq && apt-get install -y -qq --no-install-recommends ${PACKAGES[*]} && apt-get clean" \
        >"$REPO/target/swift-apt.log" 2>&1 ||
        { tail -20 "$REPO/target/swift-apt.log" >&2; fail "installing ${PACKAGES[*]} failed (log: target/swift-apt.log)"; }
    chroot_ready || fail "the chroot has no swiftc or no CA certificates after the install"
    phase "chroot ready in $(since "$started") ($(du -sh --exclude="$ROOT$REPO" --exclude="$ROOT/proc" --exclude="$ROOT/dev" "$ROOT" 2>/dev/null | cut -f1))"
fi

mount_in "$ROOT"

# Runs a command in the chroot with a clean environment.
in_root() {
    chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"
}

phase "$(in_root swiftc --version 2>&1 | head -1)"

# ---------------------------------------------------------------------------------------
# 2. Compile: MeridianFFI (generated) -> Meridian (adapter) -> the test program
# ---------------------------------------------------------------------------------------

started="$(now)"
rm -rf "$BUILD"
mkdir -p "$BUILD"
phase "compiling MeridianFFI (generated), Meridian (adapter) and the test program"
in_root swiftc "${SWIFT_FLAGS[@]}" -parse-as-library -module-name MeridianFFI \
    -emit-module -emit-module-path "$BUILD/MeridianFFI.swiftmodule" \
    -emit-library -static -o "$BUILD/libMeridianFFI.a" \
    "$HERE/Sources/MeridianFFI/MeridianFFI.swift"
in_root swiftc "${SWIFT_FLAGS[@]}" -parse-as-library -module-name Meridian -I "$BUILD" \
    -emit-module -emit-module-path "$BUILD/Meridian.swiftmodule" \
    -emit-library -static -o "$BUILD/libMeridian.a" \
    "$HERE"/Sources/Meridian/*.swift
in_root swiftc "${SWIFT_FLAGS[@]}" -module-name MeridianTests -I "$BUILD" \
    -L "$BUILD" -lMeridian -lMeridianFFI -L "$LIB_DIR" -lmeridian_ffi \
    -o "$BUILD/meridian-swift-tests" \
    "$HERE"/Tests/MeridianTests/*.swift "$HERE/Tests/XCTMain/main.swift"
phase "compiled in $(since "$started")"

# Package.swift builds the same three modules (the SwiftPM route for apps); build it too so
# that it stays right. Its scratch directory is kept: later builds are incremental.
started="$(now)"
phase "swift build (Package.swift)"
in_root sh -c 'cd "$1" && shift && exec swift build "$@"' swift-build "$HERE" \
    --scratch-path "$REPO/target/swift-spm" -Xlinker -L"$LIB_DIR" >"$BUILD/swift-build.log" 2>&1 ||
    { tail -30 "$BUILD/swift-build.log" >&2; fail "swift build failed (log: target/swift-build/swift-build.log)"; }
phase "swift build done in $(since "$started")"

# ---------------------------------------------------------------------------------------
# 3. Run the scenarios
# ---------------------------------------------------------------------------------------

started="$(now)"
phase "running the scenarios (devserver: $LIB_DIR/devserver, timeout ${TEST_TIMEOUT} s)"
status=0
in_root LD_LIBRARY_PATH="$LIB_DIR" \
    MERIDIAN_DEVSERVER="$LIB_DIR/devserver" \
    MERIDIAN_WORK_DIR="$BUILD/run" \
    MERIDIAN_DEVSERVER_PIDS="$DEVSERVER_PIDS" \
    timeout --kill-after=10 "$TEST_TIMEOUT" "$BUILD/meridian-swift-tests" || status=$?
phase "scenarios ran in $(since "$started")"
[ "$status" = 0 ] || fail "the test program failed (exit $status)"
