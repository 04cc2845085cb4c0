#!/usr/bin/env bash
# Build kube-apiserver, kube-controller-manager, kube-scheduler and kubelet v1.20.2 from
# Debian 12's own `kubernetes` source package, with Debian packages only (nothing here can
# download Kubernetes binaries). Idempotent: does nothing when the cache already holds them.
# Usage: tools/k8s/build.sh [CACHE]   (default $OPENRR_K8S_CACHE or /var/cache/openrr/k8s-1.20.2)
set -euo pipefail
CACHE=$(realpath -m "${1:-${OPENRR_K8S_CACHE:-/var/cache/openrr/k8s-1.20.2}}")
OUT=$CACHE/bin W=$CACHE/build
BINS="kube-apiserver kube-controller-manager kube-scheduler kubelet"
have_all() { for b in $BINS; do [ -x "$OUT/$b" ] || return 1; done; }
if have_all; then echo "kubernetes binaries cached in $OUT"; exit 0; fi
mkdir -p "$OUT" "$W"
export DEBIAN_FRONTEND=noninteractive
if ! grep -rqs '^Types: deb-src' /etc/apt/sources.list.d/ /etc/apt/sources.list 2>/dev/null; then
  # a deb-src twin of the machine's own first Debian entry (same mirror, same keyring)
  awk 'BEGIN{RS="";ORS="\n\n"} NR==1{sub(/Types: deb/,"Types: deb-src"); print}' \
    /etc/apt/sources.list.d/debian.sources > /etc/apt/sources.list.d/debian-src.sources
fi
apt-get update -qq
# make runs the build; golang-go is Go 1.19 on bookworm. Kubernetes 1.20 vendors reflect2 1.0.1, which crashes the
# API server (SIGSEGV in mapiterinit) when built with Go >= 1.18: swap in Debian's 1.0.2.
apt-get install -y -qq make golang-go rsync jq golang-github-modern-go-reflect2-dev etcd-server >/dev/null
cd "$W"
[ -d kubernetes-1.20.2 ] || { apt-get source --download-only -qq kubernetes; tar xzf kubernetes_1.20.5+really1.20.2.orig.tar.gz; }
cd kubernetes-1.20.2
R=vendor/github.com/modern-go/reflect2
rm -f $R/*.go $R/*.s
cp /usr/share/gocode/src/github.com/modern-go/reflect2/*.go /usr/share/gocode/src/github.com/modern-go/reflect2/*.s $R/
export GOPATH=$W/gopath GOCACHE=$W/gocache CGO_ENABLED=0 HOME=$W/home
mkdir -p "$HOME"
make WHAT="cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler cmd/kubelet" GOLDFLAGS="-s -w"
for b in $BINS; do cp "_output/bin/$b" "$OUT/$b.tmp" && mv "$OUT/$b.tmp" "$OUT/$b"; done
# the pause source for a real node's sandbox image
cp build/pause/linux/pause.c "$CACHE/pause.c"
# the Go build cache is ~1 GB and only useful for rebuilding
rm -rf "$W/gocache" "$W/gopath"
echo "kubernetes binaries built into $OUT"
