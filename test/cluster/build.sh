#!/usr/bin/env bash
# build.sh builds the cluster's binaries once per version and caches them outside
# the repo: Kubernetes (the release pinned in build/go.mod) under
# $CLUSTER_CACHE/<version>/bin and CoreDNS under $CLUSTER_CACHE/coredns-<version>/bin.
# A cached version is reused as is; delete its directory to rebuild.
# Cold, on 2 cores shared with other work, this took 13 to 22 minutes
# (Kubernetes 9-17, CoreDNS 3-5); cached, it takes nothing.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${CLUSTER_CACHE:-/var/cache/app-k8s}
k8s_version=$(awk '($1 == "k8s.io/kubernetes" || $2 == "k8s.io/kubernetes") && /v1\./ {print ($1 == "require" ? $3 : $2); exit}' "$here/build/go.mod")
coredns_version=${COREDNS_VERSION:-v1.12.4}
k8s_bins=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)

# The builds share the machine with whatever else runs: keep them polite.
go_build() { nice -n 15 env GOTOOLCHAIN=local CGO_ENABLED=0 go "$@"; }

build_k8s() {
	local out=$cache/$k8s_version/bin
	if [[ -f $out/.complete ]]; then
		echo "build: kubernetes $k8s_version cached in $out"
		return
	fi
	local minor=${k8s_version#v1.}
	minor=${minor%%.*}
	local ld="-s -w"
	for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ld+=" -X $p.gitVersion=$k8s_version -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
	done
	local tmp=$cache/$k8s_version/bin.tmp pkgs=() start=$SECONDS
	for b in "${k8s_bins[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
	rm -rf "$tmp" && mkdir -p "$tmp"
	echo "build: kubernetes $k8s_version (${k8s_bins[*]}) into $out"
	# One go build for all of them: the shared packages are compiled once.
	(cd "$here/build" && go_build build -trimpath -ldflags "$ld" -o "$tmp/" "${pkgs[@]}")
	touch "$tmp/.complete"
	rm -rf "$out" && mv "$tmp" "$out"
	echo "build: kubernetes $k8s_version built in $((SECONDS - start))s"
}

build_coredns() {
	local out=$cache/coredns-$coredns_version/bin
	if [[ -f $out/.complete ]]; then
		echo "build: coredns $coredns_version cached in $out"
		return
	fi
	local tmp=$cache/coredns-$coredns_version/bin.tmp start=$SECONDS
	rm -rf "$tmp" && mkdir -p "$tmp"
	echo "build: coredns $coredns_version into $out"
	# go install pkg@version builds with CoreDNS's own go.mod and go.sum.
	GOBIN=$tmp go_build install -trimpath -ldflags "-s -w" "github.com/coredns/coredns@$coredns_version"
	touch "$tmp/.complete"
	rm -rf "$out" && mv "$tmp" "$out"
	echo "build: coredns $coredns_version built in $((SECONDS - start))s"
}

case ${1:-all} in
all)
	build_k8s
	build_coredns
	;;
k8s) build_k8s ;;
coredns) build_coredns ;;
bindir) echo "$cache/$k8s_version/bin" ;;
coredns-bin) echo "$cache/coredns-$coredns_version/bin/coredns" ;;
coredns-version) echo "$coredns_version" ;;
*) echo "usage: $0 [all|k8s|coredns|bindir|coredns-bin|coredns-version]" >&2; exit 2 ;;
esac
