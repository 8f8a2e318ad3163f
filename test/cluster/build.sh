#!/usr/bin/env bash
# build.sh builds from source, once per version, what cannot be installed
# here, and caches it outside the repo:
#
#   Kubernetes (the release pinned in build/go.mod)  $CLUSTER_CACHE/<version>/bin
#   CoreDNS                                          $CLUSTER_CACHE/coredns-<version>/bin
#   kube-network-policies (patched, build_netpol)    $CLUSTER_CACHE/kube-network-policies-<version>-<patch hash>/bin
#   metrics-server                                   $CLUSTER_CACHE/metrics-server-<version>/bin
#   nginx (a current one: see build_nginx)           $NGINX_CACHE/<version>
#   Prometheus (monitoring/check/go.mod's version)   $CLUSTER_CACHE/prometheus-<version>/bin
#
# A cached version is reused as is; delete its directory to rebuild. Every
# build prints a progress line at least every 20 s. Cold, on 2 cores shared
# with other work, Kubernetes and CoreDNS took 13 to 22 minutes (Kubernetes
# 9-17, CoreDNS 3-5), nginx about 1, kube-network-policies about 2 and
# metrics-server 5-10; cached, they take nothing.
#
#   build.sh [all]        k8s, coredns, metrics-server, nginx and netpol (cluster.sh up runs this)
#   build.sh k8s|coredns|nginx|netpol|metrics-server|prometheus
#   build.sh bindir|coredns-bin|coredns-version|nginx-bin|nginx-version|netpol-bin|netpol-version
#   build.sh metrics-server-bin|metrics-server-version|prometheus-bin|prometheus-version|prometheus-release
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${CLUSTER_CACHE:-/var/cache/app-k8s}
k8s_version=$(awk '($1 == "k8s.io/kubernetes" || $2 == "k8s.io/kubernetes") && /v1\./ {print ($1 == "require" ? $3 : $2); exit}' "$here/build/go.mod")
coredns_version=${COREDNS_VERSION:-v1.12.4}
netpol_version=${NETPOL_VERSION:-v0.8.0}
metrics_server_version=${METRICS_SERVER_VERSION:-v0.8.0}
k8s_bins=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
# The upstream nginx release of Debian 13 (trixie), whose source archive is
# reachable from here; see build_nginx.
nginx_version=1.26.3
nginx_cache=${NGINX_CACHE:-/var/cache/app-nginx}
# ---- monitoring (issue 14): the Prometheus that promtool comes from.
prometheus_module=$here/../../monitoring/check
prometheus_version=$(awk '$1 == "github.com/prometheus/prometheus" {print $2; exit}' "$prometheus_module/go.mod")
# The module's v0.3XY.Z is Prometheus 3.XY.Z.
prometheus_release=${prometheus_version#v0.}
prometheus_release=3.$((${prometheus_release%%.*} - 300)).${prometheus_release#*.}

# The builds share the machine with whatever else runs: keep them polite.
go_build() { nice -n 15 env GOTOOLCHAIN=local CGO_ENABLED=0 go "$@"; }

# with_progress WHAT LOG COMMAND… runs COMMAND with its output in LOG and,
# until it ends, prints every 20 s how long it has run, how many lines LOG
# has (go build -v and make print one per package or file compiled) and the
# last one. On failure it prints the end of LOG.
with_progress() {
	local what=$1 log=$2 start=$SECONDS pid rc=0 last
	shift 2
	"$@" >"$log" 2>&1 &
	pid=$!
	while ! wait_up_to 20 "$pid"; do
		last=$(tail -n 1 "$log" | grep -o '[^ ]*$' | cut -c1-100 || true)
		echo "build: $what: $((SECONDS - start))s, $(wc -l <"$log") lines of output, last: ${last:-(none yet)}"
	done
	wait "$pid" || rc=$?
	if ((rc != 0)); then
		tail -n 40 "$log" >&2
		echo "build: $what failed (exit $rc); whole log in $log" >&2
	fi
	return "$rc"
}

# wait_up_to SECONDS PID: true once PID has exited, false after SECONDS.
wait_up_to() {
	local i
	for ((i = 0; i < $1 * 2; i++)); do
		kill -0 "$2" 2>/dev/null || return 0
		sleep 0.5
	done
	! kill -0 "$2" 2>/dev/null
}

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
	echo "build: kubernetes $k8s_version (${k8s_bins[*]}) into $out (cold: about 10-17 min; go build -v lists each package compiled)"
	# One go build for all of them: the shared packages are compiled once.
	(cd "$here/build" && with_progress "kubernetes $k8s_version" "$cache/$k8s_version/build.log" \
		go_build build -v -trimpath -ldflags "$ld" -o "$tmp/" "${pkgs[@]}")
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
	echo "build: coredns $coredns_version into $out (cold: about 3-5 min)"
	# go install pkg@version builds with CoreDNS's own go.mod and go.sum.
	# Resolving the package also asks the module proxy about the path's
	# prefix github.com/coredns, which is no module; the proxy has once
	# answered that with a passing 403 (an error, not "not found"), so try
	# up to three times.
	local try
	for try in 1 2 3; do
		GOBIN=$tmp with_progress "coredns $coredns_version" "$cache/coredns-$coredns_version/build.log" \
			go_build install -v -trimpath -ldflags "-s -w" "github.com/coredns/coredns@$coredns_version" && break
		((try < 3)) || return 1
		echo "build: coredns: try $try failed; again in 20 s" >&2
		sleep 20
	done
	touch "$tmp/.complete"
	rm -rf "$out" && mv "$tmp" "$out"
	echo "build: coredns $coredns_version built in $((SECONDS - start))s"
}

# build_netpol builds kube-network-policies, the NetworkPolicy agent of
# Kubernetes SIG Network (sigs.k8s.io/kube-network-policies; its command is
# the package cmd, which upstream's image names /bin/netpol). It programs
# nftables through netlink (no nft command needed) and judges each new
# connection of a selected pod in user space through NFQUEUE.
#
# It is built from a copy of the module's source (the module cache is
# read-only, and go build -overlay refuses files in it) with a patch,
# build/kube-network-policies-<version>.patch, of two changes: this host's
# kernel lacks the nftables queue expression (CONFIG_NFT_QUEUE), so it
# queues with the xtables NFQUEUE target through nftables' compat layer;
# and its sync no longer deletes its table, which made the kernel drop the
# packets waiting for a verdict. The patch's header says why and what. The cache directory is
# named after the version and the patch's hash, so a changed patch builds
# anew. Cold, on 2 shared cores, it took 2 min 17 s (Kubernetes' client
# modules already in the module cache); the static binary is 55 MB.
netpol_patch=$here/build/kube-network-policies-$netpol_version.patch
netpol_dir() {
	echo "$cache/kube-network-policies-$netpol_version-$(sha256sum "$netpol_patch" | cut -c1-12)"
}

build_netpol() {
	local dir out
	dir=$(netpol_dir)
	out=$dir/bin
	if [[ -f $out/.complete ]]; then
		echo "build: kube-network-policies $netpol_version (patched) cached in $out"
		return
	fi
	local tmp=$dir/bin.tmp src=$dir/src mod start=$SECONDS
	rm -rf "$tmp" "$src" && mkdir -p "$tmp"
	echo "build: kube-network-policies $netpol_version, patched ($(basename "$netpol_patch")), into $out (cold: about 2-4 min)"
	# Outside any module, go mod download fetches the release alone.
	mod=$(cd "$tmp" && go mod download -json "sigs.k8s.io/kube-network-policies@$netpol_version" | jq -r .Dir)
	[[ -d $mod ]] || { echo "build: go mod download sigs.k8s.io/kube-network-policies@$netpol_version gave no source directory" >&2; return 1; }
	cp -r "$mod" "$src"
	chmod -R u+w "$src"
	(cd "$src" && git apply "$netpol_patch")
	(cd "$src" && with_progress "kube-network-policies $netpol_version" "$dir/build.log" \
		go_build build -v -trimpath -ldflags "-s -w" -o "$tmp/kube-network-policies" ./cmd)
	rm -rf "$src"
	touch "$tmp/.complete"
	rm -rf "$out" && mv "$tmp" "$out"
	echo "build: kube-network-policies $netpol_version built in $((SECONDS - start))s: $out/kube-network-policies"
}

# ---- metrics-server (issue 15: autoscaling) ---------------------------------

# build_metrics_server builds metrics-server (sigs.k8s.io/metrics-server),
# the cluster add-on behind the resource metrics API (metrics.k8s.io) that
# `kubectl top` and the HorizontalPodAutoscalers read. Like CoreDNS it is
# built with its own go.mod and go.sum by go install pkg@version. Cold, on 2
# cores shared with other builds (load average 13), v0.8.0 took 9 min 37 s
# (4 min 28 s of CPU), fetching its modules included; the static binary is
# 70 MB. Cached, nothing.
build_metrics_server() {
	local out=$cache/metrics-server-$metrics_server_version/bin
	if [[ -f $out/.complete ]]; then
		echo "build: metrics-server $metrics_server_version cached in $out"
		return
	fi
	local tmp=$cache/metrics-server-$metrics_server_version/bin.tmp start=$SECONDS
	rm -rf "$tmp" && mkdir -p "$tmp"
	echo "build: metrics-server $metrics_server_version into $out (cold: about 5-10 min)"
	GOBIN=$tmp with_progress "metrics-server $metrics_server_version" "$cache/metrics-server-$metrics_server_version/build.log" \
		go_build install -v -trimpath -ldflags "-s -w" "sigs.k8s.io/metrics-server/cmd/metrics-server@$metrics_server_version"
	touch "$tmp/.complete"
	rm -rf "$out" && mv "$tmp" "$out"
	echo "build: metrics-server $metrics_server_version built in $((SECONDS - start))s: $out/metrics-server"
}

# build_nginx builds the plain upstream nginx of Debian 13 (trixie): the
# tests run the edge configs on it as well as on Debian 12's nginx 1.22, and
# the test cluster's frontend image is made from it. Debian's source archive
# serves trixie's nginx_<version>.orig.tar.gz here (not its .dsc or patches,
# nor newer suites' files), so apt gets a deb-src line for trixie in a
# sources file of its own: deb-src only, no trixie binary package can be
# installed through it. apt checks the tarball against the signed index.
#
# Compiled-in paths are the nginx-unprivileged image's (pid and temp files
# in /tmp, config in /etc/nginx); the tests pass their own with -p/-c/-e.
# Modules: the default ones (map, limit_req, proxy, upstream keepalive,
# charset, headers, rewrite, log) plus what the configs in nginx/ use and
# the default build leaves out: ssl and http_v2.
build_nginx() {
	local out=$nginx_cache/$nginx_version
	if [[ -f $out/.complete ]]; then
		echo "build: nginx $nginx_version cached in $out"
		return
	fi
	local tmp=$out.tmp start=$SECONDS src=/etc/apt/sources.list.d/app-trixie-src.sources
	local deps=(build-essential libpcre2-dev libssl-dev zlib1g-dev) missing=() p
	for p in "${deps[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
	done
	if [[ ! -f $src ]] || ((${#missing[@]})); then
		((EUID == 0)) || { echo "build: nginx needs, as root, a trixie deb-src line ($src) and ${missing[*]:-its build packages}: run this as root once" >&2; return 1; }
		if [[ ! -f $src ]]; then
			echo "build: adding $src (deb-src only)"
			cat >"$src" <<-X
				# Added by the app's test/cluster/build.sh: the source of Debian 13's
				# nginx, to build it. Source packages only; delete to undo.
				Types: deb-src
				URIs: http://deb.debian.org/debian
				Suites: trixie
				Components: main
				Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
			X
		fi
		echo "build: apt-get update, install ${missing[*]:-nothing}"
		apt-get update -qq
		((${#missing[@]} == 0)) || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
	fi
	rm -rf "$tmp" && mkdir -p "$tmp/src"
	echo "build: nginx $nginx_version from Debian trixie's source into $out (cold: about 1-2 min)"
	# apt reports the .dsc and patches it cannot fetch and exits non-zero:
	# the tarball is what counts.
	(cd "$tmp/src" && apt-get source --download-only -qq "nginx/trixie" >download.log 2>&1) || true
	local tarball=$tmp/src/nginx_$nginx_version.orig.tar.gz
	if [[ ! -f $tarball ]]; then
		cat "$tmp/src/download.log" >&2
		echo "build: apt-get source nginx/trixie fetched no nginx_$nginx_version.orig.tar.gz (a new trixie release? set nginx_version in $0)" >&2
		return 1
	fi
	tar -xzf "$tarball" -C "$tmp/src"
	(
		cd "$tmp/src/nginx-$nginx_version"
		with_progress "nginx $nginx_version configure" "$tmp/configure.log" \
			./configure --prefix=/etc/nginx --sbin-path=/usr/sbin/nginx --conf-path=/etc/nginx/nginx.conf \
			--error-log-path=/dev/stderr --http-log-path=/dev/stdout --pid-path=/tmp/nginx.pid --lock-path=/tmp/nginx.lock \
			--http-client-body-temp-path=/tmp/client_temp --http-proxy-temp-path=/tmp/proxy_temp \
			--http-fastcgi-temp-path=/tmp/fastcgi_temp --http-uwsgi-temp-path=/tmp/uwsgi_temp --http-scgi-temp-path=/tmp/scgi_temp \
			--with-http_ssl_module --with-http_v2_module \
			--with-cc-opt='-O2 -fstack-protector-strong -D_FORTIFY_SOURCE=2 -fPIE' --with-ld-opt='-Wl,-z,relro -Wl,-z,now -pie'
		with_progress "nginx $nginx_version make" "$tmp/make.log" nice -n 15 make -j"$(nproc)"
		make install DESTDIR="$tmp/root" >"$tmp/install.log" 2>&1
	)
	# make install makes the directories of the compiled-in log and temp
	# paths too: /dev and /tmp, empty.
	rmdir "$tmp/root/dev" "$tmp/root/tmp"
	"$tmp/root/usr/sbin/nginx" -V
	mv "$tmp"/*.log "$tmp/root/"
	touch "$tmp/root/.complete"
	rm -rf "$out" && mv "$tmp/root" "$out" && rm -rf "$tmp"
	echo "build: nginx $nginx_version built in $((SECONDS - start))s: $out/usr/sbin/nginx"
}

# ---- monitoring (issue 14) -------------------------------------------------------
# build_prometheus builds the Prometheus server of the version that
# monitoring/check's go.mod pins (v0.316.0 is Prometheus 3.16.0; promtool
# in make test comes from the same module), for e2e.sh's monitoring step.
# The build tags leave out every service discovery but Kubernetes'; no web
# UI assets are built in (the API and the rules are what the test uses).
# The module needs the go of its go.mod, not the host's, hence GOTOOLCHAIN.
build_prometheus() {
	local out=$cache/prometheus-$prometheus_version/bin
	if [[ -f $out/.complete ]]; then
		echo "build: prometheus $prometheus_version cached in $out"
		return
	fi
	local tmp=$cache/prometheus-$prometheus_version/bin.tmp start=$SECONDS
	rm -rf "$tmp" && mkdir -p "$tmp"
	echo "build: prometheus $prometheus_version into $out (cold: a few minutes)"
	(cd "$prometheus_module" && with_progress "prometheus $prometheus_version" "$cache/prometheus-$prometheus_version/build.log" \
		nice -n 15 env GOTOOLCHAIN="${GOTOOLCHAIN:-go1.26.11}" CGO_ENABLED=0 go build -v -trimpath -tags remove_all_sd,enable_kubernetes_sd \
		-ldflags "-s -w -X github.com/prometheus/common/version.Version=$prometheus_release" \
		-o "$tmp/prometheus" github.com/prometheus/prometheus/cmd/prometheus)
	touch "$tmp/.complete"
	rm -rf "$out" && mv "$tmp" "$out"
	echo "build: prometheus $prometheus_version built in $((SECONDS - start))s: $out/prometheus"
}
# ---- end monitoring ----------------------------------------------------------------

case ${1:-all} in
all)
	build_k8s
	build_coredns
	build_metrics_server
	build_nginx
	build_netpol
	;;
k8s) build_k8s ;;
coredns) build_coredns ;;
nginx) build_nginx ;;
netpol) build_netpol ;;
metrics-server) build_metrics_server ;;
prometheus) build_prometheus ;;
bindir) echo "$cache/$k8s_version/bin" ;;
coredns-bin) echo "$cache/coredns-$coredns_version/bin/coredns" ;;
coredns-version) echo "$coredns_version" ;;
nginx-bin) echo "$nginx_cache/$nginx_version/usr/sbin/nginx" ;;
nginx-version) echo "$nginx_version" ;;
netpol-bin) echo "$(netpol_dir)/bin/kube-network-policies" ;;
netpol-version) echo "$netpol_version" ;;
metrics-server-bin) echo "$cache/metrics-server-$metrics_server_version/bin/metrics-server" ;;
metrics-server-version) echo "$metrics_server_version" ;;
prometheus-bin) echo "$cache/prometheus-$prometheus_version/bin/prometheus" ;;
prometheus-version) echo "$prometheus_version" ;;
prometheus-release) echo "$prometheus_release" ;;
*) echo "usage: $0 [all|k8s|coredns|nginx|netpol|metrics-server|prometheus|bindir|coredns-bin|coredns-version|nginx-bin|nginx-version|netpol-bin|netpol-version|metrics-server-bin|metrics-server-version|prometheus-bin|prometheus-version|prometheus-release]" >&2; exit 2 ;;
esac
