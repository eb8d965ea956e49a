#!/usr/bin/env bash
# Builds a kube-apiserver for the Kubernetes-mode tests from Debian's `kubernetes` source package
# (1.20.2) and installs Debian's etcd-server beside it. Nothing here can be downloaded prebuilt.
#
# The binary is cached outside the clone, in $XLB_CACHE_DIR (default ~/.cache/xlb) under
# kube-apiserver-<hash>/, where <hash> covers this script and the patches it applies: a fresh clone
# reuses the binary, a changed recipe builds a new one. With the binary present the script only
# checks and prints its path, in about a second.
#
# Usage: deploy/kube-apiserver.sh [--print-path]
#   Builds if needed; prints the binary's path on stdout. --print-path prints the path it would
#   have without building anything (and exits 1 if the binary is not there yet).
# Progress goes to stderr, one line per step with the elapsed time; the build log is kept in the
# cache directory when a step fails.
#
# Two problems of this source with today's Go, and what the recipe does about them:
# - vendor/github.com/modern-go/reflect2 v1.0.1 reads Go runtime internals that changed in Go 1.18:
#   the apiserver crashes at start-up. Debian's golang-github-modern-go-reflect2-dev (v1.0.2, made
#   for Go 1.18+) replaces the vendored copy.
# - Service watches never end once the server side of the watch ends (kubernetes#102464):
#   deploy/kube-apiserver/decorated-watcher-close.patch closes the decorated watcher's result
#   channel on every exit, as upstream fixed it. The patch file explains the mechanism.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
patch_dir=$here/kube-apiserver
version=1.20.2

cache_root=${XLB_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/xlb}
recipe_hash=$(cat "$here/kube-apiserver.sh" "$patch_dir"/*.patch | sha256sum | cut -c1-16)
out_dir=$cache_root/kube-apiserver-$recipe_hash
binary=$out_dir/kube-apiserver

started=$SECONDS
current_step="start"
progress() {
  local t=$((SECONDS - started))
  printf '[kube-apiserver %d:%02d] %s\n' $((t / 60)) $((t % 60)) "$*" >&2
}
step() {
  current_step=$*
  progress "$*"
}
fail() {
  trap - EXIT
  printf '[kube-apiserver] error in step "%s": %s\n' "$current_step" "$*" >&2
  exit 1
}

if [ "${1:-}" = "--print-path" ]; then
  echo "$binary"
  [ -x "$binary" ]
  exit
fi

etcd_present() { command -v etcd >/dev/null 2>&1; }

if [ -x "$binary" ] && etcd_present; then
  echo "$binary"
  exit 0
fi

[ "$(id -u)" -eq 0 ] || fail "installing Debian packages needs root (sudo)"

mkdir -p "$cache_root"
# One build at a time per cache: a second caller waits, then finds the binary.
exec 9>"$cache_root/kube-apiserver.lock"
if ! flock -n 9; then
  step "another build holds $cache_root/kube-apiserver.lock; waiting for it"
  flock 9
fi

log=$cache_root/kube-apiserver-$recipe_hash.log
: >"$log"
# A failing command's output is in the log; name the step and the log.
trap 'rc=$?; [ $rc -eq 0 ] || printf "[kube-apiserver] error in step \"%s\" (exit %d); log: %s\n" "$current_step" $rc "$log" >&2' EXIT

apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$log" 2>&1 && return 0
  apt-get update -q >>"$log" 2>&1 || fail "apt-get update failed (log: $log)"
  apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$log" 2>&1 \
    || fail "apt-get install ${missing[*]} failed (log: $log)"
}

step "Debian packages: etcd-server"
apt_install etcd-server
etcd_present || fail "etcd-server is installed but etcd is not on PATH"

if [ -x "$binary" ]; then
  echo "$binary"
  exit 0
fi

step "Debian packages for the build: golang-go, golang-github-modern-go-reflect2-dev, dpkg-dev, patch"
apt_install golang-go golang-github-modern-go-reflect2-dev dpkg-dev patch
reflect2_src=/usr/share/gocode/src/github.com/modern-go/reflect2
[ -f "$reflect2_src/go_above_118.go" ] || fail "$reflect2_src has no Go 1.18 support (need golang-github-modern-go-reflect2-dev >= 1.0.2)"

step "Debian source lists (deb-src) for the kubernetes source package"
if ! apt-cache showsrc kubernetes 2>/dev/null | grep -q "^Version: .*$version"; then
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
  cat >/etc/apt/sources.list.d/xlb-deb-src.sources <<EOF
# Written by xlb's deploy/kube-apiserver.sh: Debian's source packages, to build kube-apiserver.
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: $codename
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  apt-get update -q >>"$log" 2>&1 || fail "apt-get update failed (log: $log)"
  apt-cache showsrc kubernetes 2>/dev/null | grep -q "^Version: .*$version" \
    || fail "Debian has no kubernetes source package of version $version for $codename"
fi

work=$cache_root/kube-apiserver-build-$recipe_hash
# A failed build keeps its work dir for a look; the next build (under the lock) removes them all.
rm -rf "$cache_root"/kube-apiserver-build-*
mkdir -p "$work"

step "downloading the kubernetes source package"
(cd "$work" && apt-get source --download-only kubernetes) >>"$log" 2>&1 || fail "apt-get source kubernetes failed (log: $log)"
dsc=$(ls "$work"/kubernetes_*"$version"*.dsc 2>/dev/null | head -n1)
[ -n "$dsc" ] || fail "the downloaded source is not version $version: $(ls "$work")"

step "unpacking it with Debian's patches"
# GOPATH layout: Kubernetes 1.20 builds in GOPATH mode (as its hack/ scripts do), with vendor/.
gopath=$work/gopath
src=$gopath/src/k8s.io/kubernetes
mkdir -p "$(dirname "$src")"
dpkg-source --no-check -x "$dsc" "$src" >>"$log" 2>&1 || fail "dpkg-source -x failed (log: $log)"

step "replacing vendored modern-go/reflect2 v1.0.1 with Debian's v1.0.2 (Go >= 1.18)"
rm -rf "$src/vendor/github.com/modern-go/reflect2"
cp -r "$reflect2_src" "$src/vendor/github.com/modern-go/reflect2"

for p in "$patch_dir"/*.patch; do
  step "applying $(basename "$p")"
  patch -d "$src" -p1 --forward --batch <"$p" >>"$log" 2>&1 || fail "patch $(basename "$p") does not apply (log: $log)"
done

# GOPATH mode, as Kubernetes 1.20's own build; GOPATH is inside the work dir and the build cache in
# the cache directory, never in the clone. The build cache makes a rebuild after a recipe change
# take a fraction of the first.
export GOPATH=$gopath GO111MODULE=off GOCACHE=$cache_root/go-build CGO_ENABLED=0 GOFLAGS=

# The generated OpenAPI definitions are not in the source package (upstream's make generates them);
# generate them as Makefile.generated_files does: every package with a +k8s:openapi-gen tag, but
# the code-generator and sample-apiserver examples.
step "generating pkg/generated/openapi (openapi-gen)"
(
  cd "$src"
  go build -o "$work/openapi-gen" ./vendor/k8s.io/kube-openapi/cmd/openapi-gen
  find -H . \( -path './_*' -o -path './.*' -o -path ./vendor \) -prune -o -type f -name '*.go' -print \
    | sed 's|^\./staging/src/|vendor/|; s|^\./||' \
    | xargs grep -l '^// *+k8s:' | xargs grep -l '+k8s:openapi-gen=' \
    | grep -v '^vendor/k8s.io/code-generator/\|^vendor/k8s.io/sample-apiserver/' \
    | xargs -n1 dirname | LC_ALL=C sort -u | sed 's|^|k8s.io/kubernetes/|' >"$work/openapi-packages"
  [ -s "$work/openapi-packages" ] || { echo "no +k8s:openapi-gen packages found"; exit 1; }
  "$work/openapi-gen" --logtostderr -i "$(paste -sd, "$work/openapi-packages")" \
    -p k8s.io/kubernetes/pkg/generated/openapi -O zz_generated.openapi \
    -h vendor/k8s.io/code-generator/hack/boilerplate.go.txt -r "$work/openapi-violations.report"
) >>"$log" 2>&1 || fail "openapi-gen failed (log: $log)"
[ -f "$src/pkg/generated/openapi/zz_generated.openapi.go" ] || fail "openapi-gen wrote no pkg/generated/openapi/zz_generated.openapi.go (log: $log)"

step "go build ./cmd/kube-apiserver ($(go version | cut -d' ' -f3); 4 to 8 minutes on 2 cores, 1.3 GB RAM)"
vpkg=k8s.io/kubernetes/vendor/k8s.io
ldflags="-s -w"
for pkg in component-base/version client-go/pkg/version; do
  ldflags+=" -X $vpkg/$pkg.gitVersion=v$version -X $vpkg/$pkg.gitMajor=1 -X $vpkg/$pkg.gitMinor=20"
  ldflags+=" -X $vpkg/$pkg.gitTreeState=clean -X $vpkg/$pkg.buildDate=1970-01-01T00:00:00Z"
done
(cd "$src" && exec go build -v -trimpath -ldflags "$ldflags" -o "$work/kube-apiserver" ./cmd/kube-apiserver) >>"$log" 2>&1 &
build_pid=$!
while kill -0 "$build_pid" 2>/dev/null; do
  for _ in $(seq 30); do
    kill -0 "$build_pid" 2>/dev/null || break
    sleep 1
  done
  kill -0 "$build_pid" 2>/dev/null || break
  progress "go build still running ($(grep -c '^k8s.io/\|^github.com/\|^golang.org/\|^google.golang.org/' "$log" || true) packages compiled)"
done
wait "$build_pid" || fail "go build failed (log: $log)"

step "checking the binary"
got=$("$work/kube-apiserver" --version 2>&1) || fail "the built kube-apiserver does not run: $got"
[ "$got" = "Kubernetes v$version" ] || fail "the built kube-apiserver reports '$got', expected 'Kubernetes v$version'"

step "installing $binary"
mkdir -p "$out_dir"
cp "$work/kube-apiserver" "$binary.tmp"
mv "$binary.tmp" "$binary"
cp "$patch_dir"/*.patch "$here/kube-apiserver.sh" "$out_dir/"

step "removing the unpacked source"
rm -rf "$work" "$log"
step "done: $binary"
echo "$binary"
