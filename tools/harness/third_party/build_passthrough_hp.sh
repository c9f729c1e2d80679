#!/usr/bin/env bash
# Builds libfuse's example/passthrough_hp, an unmodified third-party FUSE passthrough server, for
# `fpsim-harness record --daemon`, from Debian's fuse3 source package (trixie, 3.17.2), twice:
# as shipped, and with passthrough_hp-per-open-id.patch (beside this script: a new backing id for
# every open, the policy of libfuse issue #1125). Prints the two binaries' paths, one a line:
#
#   build_passthrough_hp.sh        # stock, then per-open-id
#
# The source is fetched with `apt-get source --download-only` through a private apt configuration
# (a deb-src line for trixie; the machine's own sources are never touched, as for the kernels in
# vm_kernels.cpp), and everything lives under ${XDG_CACHE_HOME:-~/.cache}/fpsim/libfuse. A second
# run finds both binaries and prints them without touching the network or rebuilding.
#
# Exit codes (tools/exit_codes.h): 0 built or cached; 1 fetching or building failed; 2 usage;
# 77 this machine lacks a tool (meson, ninja, c++, dpkg-source, apt-get) or a Debian archive to
# fetch from. Errors are one line on stderr; the tools' full output is in the cache's *.log files.
set -euo pipefail

readonly VERSION=3.17.2 # the upstream version the patch and the recorder were checked against
readonly SUITE=trixie
readonly KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly PATCH=$here/passthrough_hp-per-open-id.patch
readonly CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/fpsim/libfuse

die() { echo "build_passthrough_hp: $2" >&2; exit "$1"; }
# The last non-empty line of a tool's log, for a one-line error.
last_line() { grep -v '^[[:space:]]*$' "$1" | tail -n 1; }

[ $# -eq 0 ] || die 2 "usage: build_passthrough_hp.sh (no arguments; prints the stock and the per-open-id binary)"
for tool in meson ninja c++ cc dpkg-source apt-get; do
  command -v "$tool" >/dev/null ||
    die 77 "$tool not found (Debian packages: meson ninja-build g++ dpkg-dev apt; bash .ci/setup installs them)"
done
[ -r "$PATCH" ] || die 1 "$PATCH: missing"

mkdir -p "$CACHE" || die 1 "cannot create $CACHE"
# Two recordings starting at once must not build into the same directories.
exec 9>"$CACHE/lock"
flock 9

# What the cached binaries were built from: a change of the patch (or of this version) rebuilds.
stamp=$(printf '%s %s\n' "$VERSION" "$(sha256sum <"$PATCH" | cut -d' ' -f1)")
stock=$CACHE/build-stock/example/passthrough_hp
peropen=$CACHE/build-per-open-id/example/passthrough_hp
if [ -x "$stock" ] && [ -x "$peropen" ] && [ "$(cat "$CACHE/built" 2>/dev/null)" = "$stamp" ]; then
  printf '%s\n%s\n' "$stock" "$peropen"
  exit 0
fi

# ---- fetch the source package (once) ----------------------------------------------------------------
dsc=
[ ! -d "$CACHE/src" ] || dsc=$(find "$CACHE/src" -maxdepth 1 -name "fuse3_${VERSION}-*.dsc" | sort | tail -n 1)
if [ -z "$dsc" ]; then
  [ -r "$KEYRING" ] || die 77 "$KEYRING: not readable (package debian-archive-keyring)"
  # The archive URI the machine's own apt sources use: its mirror (or proxy) is the one that works.
  mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -n "$mirror" ] || mirror=$(awk '$1=="deb" && $2 !~ /^\[/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  [ -n "$mirror" ] || die 77 "no Debian archive in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list"
  apt=$CACHE/apt
  mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$CACHE/src"
  echo "deb-src [signed-by=$KEYRING] $mirror $SUITE main" >"$apt/sources.list"
  opts=(-o "Dir::Etc::sourcelist=$apt/sources.list" -o Dir::Etc::sourceparts=-
        -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache")
  # apt drops to _apt for downloads, who cannot write into root's cache: it warns, then downloads as
  # root anyway. Say so up front.
  [ "$(id -u)" -ne 0 ] || opts+=(-o APT::Sandbox::User=root)
  echo "build_passthrough_hp: fetching fuse3/$SUITE source from $mirror" >&2
  timeout 600 apt-get "${opts[@]}" -q update >"$CACHE/apt-update.log" 2>&1 ||
    die 1 "apt-get update (private deb-src $SUITE): $(last_line "$CACHE/apt-update.log")"
  (cd "$CACHE/src" && timeout 600 apt-get "${opts[@]}" -q source --download-only "fuse3/$SUITE") >"$CACHE/apt-source.log" 2>&1 ||
    die 1 "apt-get source --download-only fuse3/$SUITE: $(last_line "$CACHE/apt-source.log")"
  dsc=$(find "$CACHE/src" -maxdepth 1 -name "fuse3_${VERSION}-*.dsc" | sort | tail -n 1)
  if [ -z "$dsc" ]; then
    got=$(find "$CACHE/src" -maxdepth 1 -name 'fuse3_*.dsc' -printf '%f ' || true)
    die 1 "Debian's $SUITE no longer has fuse3 $VERSION (got: ${got:-nothing}); update VERSION and check the patch"
  fi
fi

# ---- unpack (Debian's patches applied) and build -------------------------------------------------------
# $1: the tree to make; $2: an extra patch or empty. Each variant has its own tree: meson builds
# out of a source tree, and the patched file must not leak into the stock build.
unpack() {
  local tree=$1 extra=$2
  rm -rf "$tree"
  dpkg-source --no-check -x "$dsc" "$tree" >"$tree.log" 2>&1 ||
    die 1 "dpkg-source -x $(basename "$dsc"): $(last_line "$tree.log")"
  [ -z "$extra" ] || patch -d "$tree" -p1 --forward --batch <"$extra" >>"$tree.log" 2>&1 ||
    die 1 "$(basename "$extra") does not apply to fuse3 $VERSION: $(last_line "$tree.log")"
}
# $1: the source tree; $2: the build directory. Only the library and the examples: the utilities
# (fusermount3's setuid install) and libfuse's tests are not needed to run a server as root.
build() {
  local tree=$1 dir=$2
  rm -rf "$dir"
  meson setup "$dir" "$tree" -Dexamples=true -Dutils=false -Dtests=false -Dbuildtype=debugoptimized \
    >"$dir.log" 2>&1 || die 1 "meson setup $(basename "$dir"): $(last_line "$dir.log")"
  ninja -C "$dir" example/passthrough_hp >>"$dir.log" 2>&1 ||
    die 1 "ninja $(basename "$dir"): $(last_line "$dir.log")"
  [ -x "$dir/example/passthrough_hp" ] || die 1 "ninja $(basename "$dir"): example/passthrough_hp was not built (no C++ compiler found by meson?)"
}

rm -f "$CACHE/built"
unpack "$CACHE/fuse3-stock" ""
build "$CACHE/fuse3-stock" "$CACHE/build-stock"
unpack "$CACHE/fuse3-per-open-id" "$PATCH"
build "$CACHE/fuse3-per-open-id" "$CACHE/build-per-open-id"
echo "$stamp" >"$CACHE/built"
printf '%s\n%s\n' "$stock" "$peropen"
