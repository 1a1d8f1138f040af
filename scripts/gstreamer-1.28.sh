#!/usr/bin/env bash
# The GStreamer 1.28 lane: a minimal Debian sid root holding Debian's GStreamer 1.28 runtime
# and development packages, and a way to run this checkout's commands inside it with the
# host's Rust toolchain.
#
#   scripts/gstreamer-1.28.sh ensure            create the root (once; reused when complete)
#                                               and build gst-plugins-rs' analytics plugin
#                                               (analyticscombiner, analyticssplitter) in it
#   scripts/gstreamer-1.28.sh run -- CMD...     run CMD in the root, in this checkout, with
#                                               scripts/env.sh sourced and its own target dir
#   scripts/gstreamer-1.28.sh shell             an interactive shell there
#   scripts/gstreamer-1.28.sh env               print the root, the versions and the commands
#
# Example (the CI lane):
#   scripts/gstreamer-1.28.sh run -- cargo test --release --features v1_28
#
# The root lives outside the checkout so that every clone on the machine shares it:
#   TRTVISION_GST128_ROOT   default /var/cache/trtvision/gst-1.28-root
# Cargo builds into target/gst-1.28 (CARGO_TARGET_DIR) so the 1.22 build in target/ is kept.
# gst-plugins-rs' analytics plugin (crates.io: gst-plugin-analytics, built against the root's
# GStreamer 1.28) lives in the root under /opt/gst-plugin-analytics and is on `run`'s
# GST_PLUGIN_PATH.
# Needs root (debootstrap, chroot, bind mounts in a private mount namespace).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
ROOT="${TRTVISION_GST128_ROOT:-/var/cache/trtvision/gst-1.28-root}"
SUITE=sid
# Packages inside the root: GStreamer 1.28 with development files (analytics and CUDA
# libraries come with libgstreamer-plugins-bad1.0-dev), the plugins, RTSP server library and
# message brokers the tests use, a C toolchain and pkg-config for the -sys crates, python3
# with GObject introspection for reading GstAnalytics from Python.
PKGS=(ca-certificates pkg-config gcc g++ libc6-dev make python3 python3-gi python3-gst-1.0
      gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 gir1.2-gst-plugins-bad-1.0
      libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstreamer-plugins-bad1.0-dev
      gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
      gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav
      libgstrtspserver-1.0-dev mosquitto redis-server nats-server)
# The stamp records the package list: changing the list makes `ensure` install again.
STAMP="$ROOT/.trtvision-complete"
WANT_STAMP="suite=$SUITE packages=${PKGS[*]}"

say() { printf '\033[1m[gst-1.28]\033[0m %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot and bind mounts)"

# The Debian mirror this machine already uses, from its own apt configuration.
mirror() {
    local uri=""
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        uri="$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' \
            /etc/apt/sources.list.d/debian.sources)"
    fi
    if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
        uri="$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^(https?|file):/) { print $i; exit } }' \
            /etc/apt/sources.list)"
    fi
    [ -n "$uri" ] || die "no Debian mirror found in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list"
    printf '%s\n' "$uri"
}

complete() { [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT_STAMP" ]; }

# gst-plugins-rs' analytics plugin: version, where it is built inside the root, its stamp.
UPSTREAM_ANALYTICS_VERSION=0.15.4
UPSTREAM_DIR=/opt/gst-plugin-analytics
UPSTREAM_LIB="$UPSTREAM_DIR/target/release/libgstrsanalytics.so"
UPSTREAM_STAMP="$ROOT$UPSTREAM_DIR/.trtvision-built-$UPSTREAM_ANALYTICS_VERSION"

# Runs a command in the root with /proc, /sys and /dev mounted, nothing else.
in_root_plain() {
    unshare --mount --propagation private -- /bin/bash -c '
        set -e
        root="$1"; shift
        mount -t proc proc "$root/proc"
        mount --rbind /sys "$root/sys"
        mount --rbind /dev "$root/dev"
        cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
        exec chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
            DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 "$@"
    ' in-root "$ROOT" "$@"
}

ensure() {
    if complete; then
        return 0
    fi
    local t0 uri
    t0=$(date +%s)
    uri="$(mirror)"
    command -v debootstrap >/dev/null 2>&1 || {
        say "installing debootstrap"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null ||
            { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
    }
    if [ ! -x "$ROOT/usr/bin/apt-get" ] || [ ! -f "$ROOT/.trtvision-debootstrap" ]; then
        say "creating a minimal Debian $SUITE root in $ROOT (debootstrap, a few minutes)"
        rm -rf "$ROOT.partial"
        mkdir -p "$(dirname "$ROOT")"
        debootstrap --variant=minbase "$SUITE" "$ROOT.partial" "$uri" >"$(dirname "$ROOT")/debootstrap.log" 2>&1 ||
            die "debootstrap failed; see $(dirname "$ROOT")/debootstrap.log"
        touch "$ROOT.partial/.trtvision-debootstrap"
        rm -rf "$ROOT"
        mv "$ROOT.partial" "$ROOT"
    fi
    printf 'deb %s %s main\n' "$uri" "$SUITE" >"$ROOT/etc/apt/sources.list"
    # The host's Release-file date checks (off where the mirror serves snapshots) apply to
    # the root too.
    apt-config dump 2>/dev/null | grep -E '^Acquire::(Check-Valid-Until|Check-Date) ' \
        >"$ROOT/etc/apt/apt.conf.d/99trtvision-host" || true
    say "installing GStreamer 1.28 and the build tools in the root"
    in_root_plain apt-get update -qq
    in_root_plain apt-get install -y -qq --no-install-recommends "${PKGS[@]}" >/dev/null
    in_root_plain apt-get clean
    printf '%s\n' "$WANT_STAMP" >"$STAMP"
    say "root ready in $(( $(date +%s) - t0 )) s"
}

# Builds gst-plugins-rs' analytics plugin (analyticscombiner, analyticssplitter) from its
# crates.io package inside the root, against the root's GStreamer 1.28, with the package's
# own Cargo.lock. Reused once built.
ensure_upstream() {
    [ -f "$UPSTREAM_STAMP" ] && [ -f "$ROOT$UPSTREAM_LIB" ] && return 0
    local t0
    t0=$(date +%s)
    say "building gst-plugin-analytics $UPSTREAM_ANALYTICS_VERSION (analyticscombiner, analyticssplitter) in the root"
    rm -rf "$ROOT$UPSTREAM_DIR"
    mkdir -p "$ROOT$UPSTREAM_DIR/fetch/src"
    # Downloads happen on the host (its cargo and certificate store; the root shares
    # CARGO_HOME): a manifest that only depends on the package makes cargo download it from
    # crates.io, `cargo metadata` says where its source is, and `cargo fetch --locked` in a
    # copy gets the dependencies its Cargo.lock names. The build in the root is offline.
    printf '%s\n' '[package]' 'name = "trtvision-fetch-gst-plugin-analytics"' 'version = "0.0.0"' \
        'edition = "2021"' 'publish = false' '' '[dependencies]' \
        "gst-plugin-analytics = \"=$UPSTREAM_ANALYTICS_VERSION\"" >"$ROOT$UPSTREAM_DIR/fetch/Cargo.toml"
    : >"$ROOT$UPSTREAM_DIR/fetch/src/lib.rs"
    local manifest
    manifest="$(cd "$ROOT$UPSTREAM_DIR/fetch" && cargo fetch -q && cargo metadata -q --format-version 1 |
        python3 -c 'import json, sys
print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"] == "gst-plugin-analytics"))')" ||
        die "downloading gst-plugin-analytics $UPSTREAM_ANALYTICS_VERSION from crates.io failed"
    cp -r "$(dirname "$manifest")" "$ROOT$UPSTREAM_DIR/src"
    (cd "$ROOT$UPSTREAM_DIR/src" && cargo fetch -q --locked) ||
        die "downloading the dependencies of gst-plugin-analytics failed"
    run_at "$UPSTREAM_DIR/src" env CARGO_TARGET_DIR="$UPSTREAM_DIR/target" \
        cargo build -q --offline --release --locked --features v1_28 --lib ||
        die "building gst-plugin-analytics failed"
    touch "$UPSTREAM_STAMP"
    say "gst-plugin-analytics built in $(( $(date +%s) - t0 )) s"
}

# Directories the command needs from the host: the checkout, what its symlinks point to
# outside it (.venv, engines/models), ../shared beside it, and the Rust toolchain.
binds() {
    local d
    printf '%s\n' "$REPO"
    for d in "$REPO/.venv" "$REPO/engines/models"; do
        if [ -L "$d" ]; then
            d="$(readlink -f "$d")"
            case "$d" in "$REPO"/*) ;; *) [ -d "$d" ] && printf '%s\n' "$d" ;; esac
        fi
    done
    [ -d "$REPO/../shared" ] && readlink -f "$REPO/../shared"
    [ -d "$HOME/.cargo" ] && printf '%s\n' "$HOME/.cargo"
    [ -d "$HOME/.rustup" ] && printf '%s\n' "$HOME/.rustup"
    return 0
}

run() {
    [ -f "$UPSTREAM_STAMP" ] ||
        say "warning: gst-plugin-analytics is not built in the root (run '$0 ensure'): no analyticscombiner/analyticssplitter"
    run_at "$REPO" "$@"
}

# Runs a command in the root from directory $1, with the host directories of `binds`.
run_at() {
    complete || die "the root in $ROOT is missing or incomplete: run '$0 ensure' first"
    local list cwd="$1"
    shift
    list="$(binds)"
    unshare --mount --propagation private -- /bin/bash -c '
        set -e
        root="$1"; repo="$2"; list="$3"; home="$4"; cwd="$5"; upstream="$6"; shift 6
        mount -t proc proc "$root/proc"
        mount --rbind /sys "$root/sys"
        mount --rbind /dev "$root/dev"
        mount -t tmpfs tmpfs "$root/tmp"
        while IFS= read -r d; do
            [ -n "$d" ] || continue
            mkdir -p "$root$d"
            mount --bind "$d" "$root$d"
        done <<<"$list"
        exec chroot "$root" /usr/bin/env -i HOME="$home" LANG=C.UTF-8 TERM="${TERM:-dumb}" \
            PATH="$home/.cargo/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
            RUSTUP_HOME="$home/.rustup" CARGO_HOME="$home/.cargo" \
            CARGO_TARGET_DIR="$repo/target/gst-1.28" TRTVISION_GST_LANE=1.28 \
            ${CARGO_BUILD_JOBS:+CARGO_BUILD_JOBS=$CARGO_BUILD_JOBS} \
            ${RUST_TEST_THREADS:+RUST_TEST_THREADS=$RUST_TEST_THREADS} \
            ${GST_DEBUG:+GST_DEBUG=$GST_DEBUG} \
            GST_PLUGIN_PATH="$upstream" \
            /bin/bash -c "cd \"$repo\" && export TRTVISION_PROFILE=gst-1.28/\${TRTVISION_PROFILE:-release} && . scripts/env.sh && cd \"$cwd\" && exec \"\$@\"" lane "$@"
    ' in-root "$ROOT" "$REPO" "$list" "$HOME" "$cwd" "$(dirname "$UPSTREAM_LIB")" "$@"
}

print_env() {
    complete || die "the root in $ROOT is missing or incomplete: run '$0 ensure' first"
    say "root: $ROOT"
    in_root_plain pkg-config --modversion gstreamer-1.0 gstreamer-analytics-1.0 gstreamer-cuda-1.0 |
        paste -sd ' ' | sed 's/^/[gst-1.28] gstreamer, analytics, cuda: /' >&2
    cat >&2 <<EOF
[gst-1.28] commands (run from the checkout; cargo builds into target/gst-1.28):
  $0 run -- cargo test --release --features v1_28
  $0 run -- gst-inspect-1.0 trtdemux
  $0 shell
EOF
}

cmd="${1:-env}"
shift || true
case "$cmd" in
    ensure) ensure; ensure_upstream; print_env ;;
    run)
        [ "${1:-}" = "--" ] && shift
        [ $# -gt 0 ] || die "usage: $0 run -- CMD..."
        run "$@" ;;
    shell) run /bin/bash ;;
    env) print_env ;;
    *) die "unknown command '$cmd' (ensure, run, shell, env)" ;;
esac
