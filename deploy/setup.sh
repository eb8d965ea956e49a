#!/usr/bin/env bash
# One set-up path for a new machine: Debian packages, npm packages, BPF objects, TypeScript, and with
# --tests the kube-apiserver the tests run against. No bpffs:
# the demo and the tests mount their own (lb/datapath/bpffs.ts) and remove them.
# Idempotent: every step checks before it acts, so a second run takes a second or two.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '[setup] %s\n' "$*" >&2; }
fail() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || fail "xlb loads BPF programs and creates network namespaces: run as root (sudo)."

packages=(clang llvm libbpf-dev bpftool iproute2 iputils-ping procps iptables nftables iperf3 ethtool make gcc libc6-dev linux-libc-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  step "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >/tmp/xlb-apt.log 2>&1; then
    step "apt-get install failed; refreshing package lists and retrying"
    apt-get update -q >>/tmp/xlb-apt.log 2>&1 || fail "apt-get update failed (see /tmp/xlb-apt.log)"
    apt-get install -y -q --no-install-recommends "${missing[@]}" >>/tmp/xlb-apt.log 2>&1 \
      || fail "apt-get install ${missing[*]} failed (see /tmp/xlb-apt.log)"
  fi
fi

lock_stamp=node_modules/.xlb-lock.sha256
lock_sum=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$lock_stamp" ] || [ "$(cat "$lock_stamp")" != "$lock_sum" ]; then
  step "installing npm packages (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error >&2 || fail "npm ci failed"
  echo "$lock_sum" > "$lock_stamp"
fi

make -s -C bpf >&2 || fail "compiling the BPF programs failed"
npx tsc -p tsconfig.json || fail "compiling the TypeScript failed"

# The kube-apiserver of the Kubernetes-mode tests (test/k8s), for the tests only (--tests): built once
# from Debian's source package (about 10 minutes on 2 cores) and cached outside the clone, in
# ~/.cache/xlb; then this takes a few ms. The demo does not need it.
[ "${1:-}" = --tests ] || exit 0
bash deploy/kube-apiserver.sh --print-path >/dev/null \
  || step "building kube-apiserver for the Kubernetes-mode tests (first time only, about 10 minutes; progress below)"
bash deploy/kube-apiserver.sh >/dev/null || fail "building kube-apiserver failed (deploy/kube-apiserver.sh; its log is named above)"
