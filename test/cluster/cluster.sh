#!/usr/bin/env bash
# cluster.sh runs a real two-node Kubernetes on this machine, built from
# upstream sources (build.sh), for the end-to-end test (e2e.sh) and by hand:
#
#   cluster.sh up           start it: PKI, etcd, the control plane, a local
#                           registry, two nodes (containerd, kubelet,
#                           kube-proxy each), CoreDNS, the NetworkPolicy
#                           agent (kube-network-policies, on each node) and
#                           metrics-server
#   cluster.sh down         stop it and undo every change it made to the host;
#                           safe to run twice, or after a failed up
#   cluster.sh push IMAGE…  copy images from podman's storage into the
#                           cluster's registry (ghcr.io/x/y:t goes to x/y:t)
#   cluster.sh env          print the exports that point kubectl at it
#   cluster.sh status       list the components; exit 0 if all of them run
#   cluster.sh lb SERVICE PROFILE [FLAG…]
#                           give a LoadBalancer Service an address: run the
#                           load balancer double (lb/) in front of both nodes
#   cluster.sh nginx-rootfs DIR
#                           assemble the frontend's stand-in nginx image's
#                           root filesystem into DIR (images/nginx), alone:
#                           test/containers builds and runs it with podman
#
# Everything lives under one state directory, $CLUSTER_STATE
# (/var/tmp/app-cluster): certificates, kubeconfig, configs, data, logs and
# PID files; node 2's under node-2/, the namespaces' files under ns/. Outside
# it the cluster changes only what Linux or the components force it to, and
# down undoes each: the bridges appnode0 (the node network, node 1 at
# 10.200.0.1) and appcni0 (node 1's pods, 10.244.0.0/24), their veths
# (appnode2 to node 2's network namespace, applb0 to the load balancer's),
# the routes to the Service range (10.96.0.0/24) and node 2's pods
# (10.244.1.0/24); iptables and ip6tables chains named KUBE-* and CNI-* and
# the rules that jump to them; the NetworkPolicy agent's nftables table
# (inet kube-network-policies); sysctls (saved at up, restored at down); the
# kubepods, app-node-2 and app-system cgroups; the paths containerd and the
# kubelet hard-code (/run/containerd, /var/lib/kubelet, /var/log/containers,
# /var/lib/cni), removed if up created them. Node 2's own network, iptables
# and nftables rules, sysctls and mounts live in its namespaces and end with
# them. Processes are stopped by recorded PID.
#
# No image can be pulled here, and the manifests say imagePullPolicy: Always,
# so containerd pulls ghcr.io, docker.io and registry.k8s.io images from a
# local registry (Debian's docker-registry on 127.0.0.1:15000) holding what
# was pushed there: the project's images (push) and the cluster's own (pause,
# CoreDNS, and the frontend's nginx, made here from a current nginx built from
# source by build.sh).
#
# Requires, as root: Debian's etcd-server, containerd, runc,
# containernetworking-plugins, iptables, nftables, docker-registry, podman,
# busybox-static, openssl, curl, jq; and what build.sh needs (go, and for nginx
# Debian's build-essential, libpcre2-dev, libssl-dev, zlib1g-dev).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)

S=${CLUSTER_STATE:-/var/tmp/app-cluster}
# Two nodes on one bridge, the "node network" 10.200.0.0/24 (README's
# diagram). Node 1 is this machine: the control plane, the registry and
# node 1's kubelet, containerd and kube-proxy run here. Node 2's run in a
# network namespace of its own (address 10.200.0.2, its own pod bridge and
# pod range) and a mount namespace of its own; the load balancer double
# runs in a third network namespace, as a cloud's is outside the nodes.
readonly NODE_BRIDGE=appnode0
readonly NODE_NAME=app-node NODE_IP=10.200.0.1 POD_BRIDGE=appcni0 POD_CIDR=10.244.0.0/24 NODE_ZONE=zone-a
readonly NODE2_NAME=app-node-2 NODE2_IP=10.200.0.2 POD2_BRIDGE=appcni1 POD2_CIDR=10.244.1.0/24 NODE2_ZONE=zone-b
readonly CLUSTER_CIDR=10.244.0.0/16
readonly LB_IP=10.200.0.100
# The host ends of the veths that join node 2 and the load balancer to the
# node bridge.
readonly NODE2_VETH=appnode2 LB_VETH=applb0
readonly SERVICE_CIDR=10.96.0.0/24 API_SERVICE_IP=10.96.0.1 CLUSTER_DNS=10.96.0.10
readonly ETCD_URL=http://127.0.0.1:12379 ETCD_PEER_URL=http://127.0.0.1:12380
readonly API_URL=https://$NODE_IP:6443
# On the node address, so that node 2 reaches it too.
readonly REGISTRY_ADDR=$NODE_IP:15000
# The registries whose images containerd takes from the local one.
readonly MIRRORED=(ghcr.io docker.io registry.k8s.io)
readonly PAUSE_IMAGE=registry.k8s.io/pause:3.10
# The image the nginx manifests name (kubernetes/check checks they agree),
# made here from build.sh's nginx, an older release of the same major version
# (1.26): the configs run on both, with the same http2 form.
readonly NGINX_IMAGE=${NGINX_IMAGE:-docker.io/nginxinc/nginx-unprivileged:1.30.7-alpine}
# The image of the tutorial's kubectl debug recipe, from Debian's busybox.
readonly BUSYBOX_IMAGE=docker.io/library/busybox:1.37
# Started in this order, stopped in the reverse one.
readonly COMPONENTS=(etcd registry kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy
	containerd-2 kubelet-2 kube-proxy-2)
# The load balancer double's processes (cluster.sh lb), stopped first.
readonly LB_PROCS=(lb-https lb-http)
# Paths that containerd 1.6 and the kubelet use whatever they are told.
readonly HARDCODED_PATHS=(/run/containerd /var/lib/kubelet /var/log/containers /var/lib/cni)
# Host settings that up or the components change; down restores them.
readonly SYSCTLS=(net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables
	net.ipv4.conf.all.route_localnet vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
	kernel.keys.root_maxkeys kernel.keys.root_maxbytes)
readonly CGROUP_NAME=kubepods
# Node 2's kubelet puts its pods under this cgroup (its cgroupRoot), so the
# two kubelets never manage each other's kubepods.
readonly NODE2_CGROUP=$NODE2_NAME
# Every component start runs in this cpu cgroup (start, system_cgroup). On
# a node the kubelet, containerd (with the runc and CNI plugin processes it
# starts) and kube-proxy run in systemd's system.slice, a sibling of
# kubepods that weighs as one group. In the root cgroup each of their
# processes weighed as much as all of a node's pods together (kubepods'
# cpu.shares are its CPUs, 2048): a drain that started five pods at once
# gave the running ones a few percent of the CPU for seconds (run queue 35
# on 2 cores) and requests took over 2 s. The control plane runs here too;
# the load balancer double does not (it stands for the cloud's).
readonly SYSTEM_CGROUP=app-system

bin=$("$here/build.sh" bindir)
coredns_bin=$("$here/build.sh" coredns-bin)
nginx_bin=$("$here/build.sh" nginx-bin)
COREDNS_IMAGE=registry.k8s.io/coredns/coredns:$("$here/build.sh" coredns-version)
readonly COREDNS_IMAGE
netpol_bin=$("$here/build.sh" netpol-bin)
# Upstream's image name, tagged as what it is: the release with build.sh's patch.
NETPOL_IMAGE=registry.k8s.io/networking/kube-network-policies:$("$here/build.sh" netpol-version)-patched
readonly NETPOL_IMAGE
# The agent's nftables table (its default name), which down removes.
readonly NETPOL_TABLE=(inet kube-network-policies)
metrics_server_bin=$("$here/build.sh" metrics-server-bin)
METRICS_SERVER_IMAGE=registry.k8s.io/metrics-server/metrics-server:$("$here/build.sh" metrics-server-version)
readonly METRICS_SERVER_IMAGE
export PATH=$bin:$PATH:/usr/local/sbin:/usr/sbin:/sbin
export KUBECONFIG=$S/kubeconfig

log() { echo "cluster: $*" >&2; }
die() {
	log "$*"
	exit 1
}

# wait_for DESCRIPTION SECONDS COMMAND… polls COMMAND every half second.
wait_for() {
	local what=$1 limit=$2 start=$SECONDS
	shift 2
	until "$@" >/dev/null 2>&1; do
		if ((SECONDS - start >= limit)); then
			log "$what: not within ${limit}s"
			return 1
		fi
		sleep 0.5
	done
	log "$what after $((SECONDS - start))s"
}

# start NAME COMMAND… runs COMMAND in its own session and in the cpu cgroup
# SYSTEM_CGROUP (START_CGROUP= : where start itself runs), logs to
# logs/NAME.log and records its PID.
start() {
	local name=$1 cg=${START_CGROUP-$(system_cgroup)}
	shift
	if [[ -n $cg ]]; then
		setsid sh -c 'echo $$ >"$0" && exec "$@"' "$cg/cgroup.procs" "$@" >"$S/logs/$name.log" 2>&1 </dev/null &
	else
		setsid "$@" >"$S/logs/$name.log" 2>&1 </dev/null &
	fi
	echo $! >"$S/pids/$name"
	log "started $name (pid $!)"
}

# system_cgroup prints the directory of SYSTEM_CGROUP in the cpu controller's
# hierarchy (cgroup v1's cpu, or v2's unified one), made with the default
# weight if missing.
system_cgroup() {
	local d=/sys/fs/cgroup/cpu/$SYSTEM_CGROUP
	[[ -d /sys/fs/cgroup/cpu ]] || d=/sys/fs/cgroup/$SYSTEM_CGROUP
	mkdir -p "$d"
	echo "$d"
}

# alive NAME: the recorded process of NAME runs (and is still that program).
alive() {
	local pid
	pid=$(cat "$S/pids/$1" 2>/dev/null) || return 1
	[[ -r /proc/$pid/cmdline ]] && grep -qa -- "$S" "/proc/$pid/cmdline"
}

stop() {
	local name=$1 pid i
	if alive "$name"; then
		pid=$(cat "$S/pids/$name")
		kill "$pid" 2>/dev/null || true
		for ((i = 0; i < 60; i++)); do
			[[ -d /proc/$pid ]] || break
			sleep 0.25
		done
		if [[ -d /proc/$pid ]]; then
			log "$name (pid $pid) ignored SIGTERM for 15s: killing it"
			kill -KILL "$pid" 2>/dev/null || true
		fi
		log "stopped $name (pid $pid)"
	fi
	rm -f "$S/pids/$name"
}

# ---- up -------------------------------------------------------------------

save_host() {
	mkdir -p "$S/host"
	local s p
	for s in "${SYSCTLS[@]}"; do
		if p=$(sysctl -n "$s" 2>/dev/null); then echo "$s=$p"; fi
	done >"$S/host/sysctl"
	for p in "${HARDCODED_PATHS[@]}"; do
		[[ -e $p ]] || echo "$p"
	done >"$S/host/created-paths"
}

# check_host refuses to start without the tools or next to another cluster.
check_host() {
	local port p cmd missing=()
	((EUID == 0)) || die "run as root"
	for cmd in etcd containerd containerd-shim-runc-v2 runc ctr iptables ip6tables nft docker-registry podman busybox go openssl curl ss jq; do
		command -v "$cmd" >/dev/null || missing+=("$cmd")
	done
	[[ -x /usr/lib/cni/bridge ]] || missing+=(/usr/lib/cni/bridge)
	if ((${#missing[@]})); then
		die "missing ${missing[*]}: apt-get install etcd-server containerd runc containernetworking-plugins iptables nftables docker-registry podman busybox-static openssl curl iproute2 jq (and Go)"
	fi
	for p in /sys/fs/cgroup/*/{"$CGROUP_NAME","$NODE2_CGROUP"} /sys/fs/cgroup/{"$CGROUP_NAME","$NODE2_CGROUP"}; do
		[[ -e $p ]] && die "$p exists: another kubelet runs here"
	done
	for p in /sys/fs/cgroup/cpu/"$SYSTEM_CGROUP" /sys/fs/cgroup/"$SYSTEM_CGROUP"; do
		[[ -n $(cat "$p/cgroup.procs" 2>/dev/null) ]] && die "$p holds processes: another cluster runs here"
	done
	for port in 6443 10248 10249 10250 10256 10257 10259 12379 12380 15000; do
		if ss -Hltn "sport = :$port" | grep -q .; then
			die "port $port is in use: is another cluster running? (ss -ltnp 'sport = :$port')"
		fi
	done
}

# pki makes a CA and every certificate and kubeconfig the cluster needs.
pki() {
	local d=$S/pki
	mkdir -p "$d"
	(
		cd "$d"
		umask 077
		key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
		key ca.key
		openssl req -x509 -new -key ca.key -subj /CN=app-cluster-ca -days 30 -out ca.crt
		key sa.key
		openssl pkey -in sa.key -pubout -out sa.pub
		# cert NAME SUBJECT [SUBJECT_ALT_NAMES]: a server+client certificate with
		# SANs, else a client certificate.
		cert() {
			local name=$1 subject=$2 sans=${3:-}
			key "$name.key"
			{
				echo "basicConstraints=CA:FALSE"
				echo "keyUsage=critical,digitalSignature,keyEncipherment"
				if [[ -n $sans ]]; then
					echo "extendedKeyUsage=serverAuth,clientAuth"
					echo "subjectAltName=$sans"
				else
					echo "extendedKeyUsage=clientAuth"
				fi
			} >"$name.ext"
			openssl req -new -key "$name.key" -subj "$subject" |
				openssl x509 -req -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 -extfile "$name.ext" -out "$name.crt" 2>/dev/null
			rm "$name.ext"
		}
		cert apiserver /CN=kube-apiserver "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:127.0.0.1,IP:$API_SERVICE_IP,IP:$NODE_IP"
		cert apiserver-kubelet-client /O=system:masters/CN=kube-apiserver-kubelet-client
		cert admin /O=system:masters/CN=kubernetes-admin
		cert controller-manager /CN=system:kube-controller-manager
		cert scheduler /CN=system:kube-scheduler
		cert kube-proxy /CN=system:kube-proxy
		cert kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" "DNS:$NODE_NAME,IP:$NODE_IP"
		cert kubelet-2 "/O=system:nodes/CN=system:node:$NODE2_NAME" "DNS:$NODE2_NAME,IP:$NODE2_IP"
	)
	pki_aggregation
	local user file
	for user in admin controller-manager scheduler kube-proxy kubelet kubelet-2; do
		file=$d/$user.kubeconfig
		[[ $user == admin ]] && file=$S/kubeconfig
		cat >"$file" <<-EOF
			apiVersion: v1
			kind: Config
			clusters:
			  - name: app-cluster
			    cluster:
			      certificate-authority: $d/ca.crt
			      server: $API_URL
			users:
			  - name: $user
			    user:
			      client-certificate: $d/$user.crt
			      client-key: $d/$user.key
			contexts:
			  - name: app-cluster
			    context: {cluster: app-cluster, user: $user, namespace: default}
			current-context: app-cluster
		EOF
	done
}

network() {
	ip link add "$NODE_BRIDGE" type bridge
	ip addr add "$NODE_IP/24" dev "$NODE_BRIDGE"
	ip link set "$NODE_BRIDGE" up
	# Service addresses exist only as kube-proxy's DNAT rules: route them
	# to the node's bridge so they never leave the machine.
	ip route replace "$SERVICE_CIDR" dev "$NODE_BRIDGE"
	sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1
}

# namespaces makes node 2's mount and network namespaces and the load
# balancer's network namespace. Each is kept as a file under $S/ns (a bind
# mount of /proc/PID/ns/*, which keeps a namespace with no process in it);
# programs enter them with nsenter (use_node). down unmounts the files, and
# a namespace ends with its last process, taking its links, routes,
# iptables rules, sysctls and mounts with it.
namespaces() {
	local ns=$S/ns p
	mkdir -p "$ns"
	# unshare keeps a namespace in a file only under a private mount.
	mount --bind "$ns" "$ns"
	mount --make-private "$ns"
	touch "$ns/node-2.mnt" "$ns/node-2.net" "$ns/lb.net"
	# Node 2's mount namespace: the paths containerd 1.6 and the kubelet
	# use whatever they are told (HARDCODED_PATHS) are node 2's own
	# directories there, so the nodes' shim sockets, container log links
	# and CNI caches never meet. Made first, so that it holds no copy of
	# the network namespaces' files.
	for p in "${HARDCODED_PATHS[@]}"; do
		mkdir -p "$p" "$S/node-2/host$p"
	done
	# shellcheck disable=SC2016 # expanded by the inner bash
	unshare --mount="$ns/node-2.mnt" --propagation private \
		bash -c 'for p in "${@:2}"; do mount --bind "$1$p" "$p"; done' _ "$S/node-2/host" "${HARDCODED_PATHS[@]}"
	unshare --net="$ns/node-2.net" true
	unshare --net="$ns/lb.net" true
}

# join_bridge VETH NETNS IP: a veth pair from the node bridge (host end
# VETH) to eth0 in the network namespace NETNS, which gets the address IP
# on the node network.
join_bridge() {
	local veth=$1 ns=$2 ip=$3
	ip link add "$veth" type veth peer name eth0 netns "$ns"
	ip link set "$veth" master "$NODE_BRIDGE" up
	nsenter --net="$ns" ip addr add "$ip/24" dev eth0
	nsenter --net="$ns" ip link set lo up
	nsenter --net="$ns" ip link set eth0 up
}

# node2_network joins node 2 to the node network and routes the pod ranges
# between the nodes: node 2's through its address, everything else from
# node 2 through node 1 (this machine), which holds node 1's pods and
# routes the Service range to its bridge. Each node's kube-proxy turns
# Service addresses into pod addresses before routing.
node2_network() {
	local ns=$S/ns/node-2.net
	join_bridge "$NODE2_VETH" "$ns" "$NODE2_IP"
	nsenter --net="$ns" ip route add default via "$NODE_IP"
	# These sysctls belong to the namespace: they end with it.
	nsenter --net="$ns" sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1
	ip route replace "$POD2_CIDR" via "$NODE2_IP" dev "$NODE_BRIDGE"
}

# lb_network joins the load balancer's namespace to the node network at
# LB_IP: it reaches both nodes' addresses, and clients on this machine
# reach it through the node bridge. From there it is not this machine, so
# kube-proxy treats its connections as a cloud load balancer's (with
# externalTrafficPolicy: Local, only to the node's own pods).
lb_network() {
	join_bridge "$LB_VETH" "$S/ns/lb.net" "$LB_IP"
}

# node2_cgroups makes node 2's kubelet's cgroup root in every cgroup v1
# hierarchy (the kubelet wants it to exist); a cpuset needs its CPUs and
# memory nodes set before anything joins it.
node2_cgroups() {
	local h
	for h in /sys/fs/cgroup/*/; do
		[[ -d $h && ! -L ${h%/} ]] || continue
		mkdir -p "$h$NODE2_CGROUP"
	done
	if [[ -f /sys/fs/cgroup/cpuset/cpuset.cpus ]]; then
		cat /sys/fs/cgroup/cpuset/cpuset.cpus >"/sys/fs/cgroup/cpuset/$NODE2_CGROUP/cpuset.cpus"
		cat /sys/fs/cgroup/cpuset/cpuset.mems >"/sys/fs/cgroup/cpuset/$NODE2_CGROUP/cpuset.mems"
	fi
	# Node 2's pods weigh as node 1's: its kubepods sits inside this group,
	# node 1's at the top with the shares of the machine's CPUs.
	if [[ -f /sys/fs/cgroup/cpu/$NODE2_CGROUP/cpu.shares ]]; then
		echo $(($(nproc) * 1024)) >"/sys/fs/cgroup/cpu/$NODE2_CGROUP/cpu.shares"
	fi
}

etcd_up() {
	start etcd etcd --name app-cluster --data-dir "$S/etcd" \
		--listen-client-urls "$ETCD_URL" --advertise-client-urls "$ETCD_URL" \
		--listen-peer-urls "$ETCD_PEER_URL" --initial-advertise-peer-urls "$ETCD_PEER_URL" \
		--initial-cluster "app-cluster=$ETCD_PEER_URL" --quota-backend-bytes 2147483648
	wait_for "etcd ready" 30 curl -sf "$ETCD_URL/health"
}

registry_up() {
	mkdir -p "$S/registry"
	cat >"$S/registry/config.yml" <<-EOF
		version: 0.1
		log: {level: warn, accesslog: {disabled: true}}
		storage:
		  filesystem: {rootdirectory: $S/registry/data}
		  delete: {enabled: true}
		http:
		  addr: $REGISTRY_ADDR
	EOF
	start registry docker-registry serve "$S/registry/config.yml"
	wait_for "registry ready" 30 curl -sf "http://$REGISTRY_ADDR/v2/"
}

apiserver_up() {
	local p=$S/pki aggregation_flags
	mapfile -t aggregation_flags < <(apiserver_aggregation_flags)
	start kube-apiserver kube-apiserver --etcd-servers="$ETCD_URL" \
		--bind-address="$NODE_IP" --advertise-address="$NODE_IP" --secure-port=6443 \
		--allow-privileged=true --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
		--client-ca-file="$p/ca.crt" --tls-cert-file="$p/apiserver.crt" --tls-private-key-file="$p/apiserver.key" \
		--kubelet-client-certificate="$p/apiserver-kubelet-client.crt" --kubelet-client-key="$p/apiserver-kubelet-client.key" \
		--kubelet-certificate-authority="$p/ca.crt" --kubelet-preferred-address-types=InternalIP \
		--service-account-issuer=https://kubernetes.default.svc.cluster.local \
		--service-account-key-file="$p/sa.pub" --service-account-signing-key-file="$p/sa.key" \
		--service-cluster-ip-range="$SERVICE_CIDR" --profiling=false \
		"${aggregation_flags[@]}"
	wait_for "kube-apiserver ready" 120 curl -sf --cacert "$p/ca.crt" --cert "$p/admin.crt" --key "$p/admin.key" "$API_URL/readyz"
}

controllers_up() {
	local p=$S/pki
	start kube-controller-manager kube-controller-manager --kubeconfig="$p/controller-manager.kubeconfig" \
		--authentication-kubeconfig="$p/controller-manager.kubeconfig" --authorization-kubeconfig="$p/controller-manager.kubeconfig" \
		--bind-address=127.0.0.1 --leader-elect=false --cluster-name=app-cluster \
		--service-cluster-ip-range="$SERVICE_CIDR" --cluster-signing-cert-file="$p/ca.crt" --cluster-signing-key-file="$p/ca.key" \
		--root-ca-file="$p/ca.crt" --service-account-private-key-file="$p/sa.key" --use-service-account-credentials=true \
		--profiling=false "$HPA_SYNC_FLAG"
	start kube-scheduler kube-scheduler --kubeconfig="$p/scheduler.kubeconfig" \
		--authentication-kubeconfig="$p/scheduler.kubeconfig" --authorization-kubeconfig="$p/scheduler.kubeconfig" \
		--bind-address=127.0.0.1 --leader-elect=false --profiling=false
	wait_for "kube-controller-manager ready" 60 curl -sfk https://127.0.0.1:10257/healthz
	wait_for "kube-scheduler ready" 60 curl -sfk https://127.0.0.1:10259/healthz
}

# use_node N sets what differs between node 1 and node 2: its name,
# address, zone, pod range and bridge, state directory, the suffix of its
# components' names (containerd, containerd-2), its kubelet's cgroup root,
# and in_node, the command prefix that runs a program in its namespaces
# (nothing for node 1, this machine's own).
use_node() {
	case $1 in
	1)
		node_name=$NODE_NAME node_ip=$NODE_IP node_zone=$NODE_ZONE pod_cidr=$POD_CIDR pod_bridge=$POD_BRIDGE
		node_dir=$S node_sfx= cgroup_root=/
		in_node=()
		;;
	2)
		node_name=$NODE2_NAME node_ip=$NODE2_IP node_zone=$NODE2_ZONE pod_cidr=$POD2_CIDR pod_bridge=$POD2_BRIDGE
		node_dir=$S/node-2 node_sfx=-2 cgroup_root=/$NODE2_CGROUP
		in_node=(nsenter --net="$S/ns/node-2.net" --mount="$S/ns/node-2.mnt" --)
		;;
	*) die "no node $1" ;;
	esac
}

containerd_up() {
	use_node "$1"
	local c=$node_dir/containerd r
	mkdir -p "$c" "$node_dir/cni/net.d"
	for r in "${MIRRORED[@]}"; do
		mkdir -p "$c/certs.d/$r"
		cat >"$c/certs.d/$r/hosts.toml" <<-EOF
			server = "https://$r"
			[host."http://$REGISTRY_ADDR"]
			  capabilities = ["pull", "resolve"]
		EOF
	done
	# restrict_oom_score_adj: this VM lacks CAP_SYS_RESOURCE, and runc fails
	# without it. The netns mounts, runc's state and the opt plugin stay in
	# the state directory; only the shims' sockets go to /run/containerd.
	cat >"$c/config.toml" <<-EOF
		version = 2
		root = "$c/root"
		state = "$c/state"
		disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.internal.v1.tracing"]
		[grpc]
		  address = "$c/containerd.sock"
		[plugins."io.containerd.internal.v1.opt"]
		  path = "$c/opt"
		[plugins."io.containerd.grpc.v1.cri"]
		  sandbox_image = "$PAUSE_IMAGE"
		  restrict_oom_score_adj = true
		  netns_mounts_under_state_dir = true
		  disable_tcp_service = true
		  stream_server_address = "127.0.0.1"
		  [plugins."io.containerd.grpc.v1.cri".containerd]
		    snapshotter = "overlayfs"
		    default_runtime_name = "runc"
		    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
		      runtime_type = "io.containerd.runc.v2"
		      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
		        Root = "$c/runc"
		  [plugins."io.containerd.grpc.v1.cri".cni]
		    bin_dir = "/usr/lib/cni"
		    conf_dir = "$node_dir/cni/net.d"
		  [plugins."io.containerd.grpc.v1.cri".registry]
		    config_path = "$c/certs.d"
	EOF
	cat >"$node_dir/cni/net.d/10-app-cluster.conflist" <<-EOF
		{
		  "cniVersion": "0.4.0",
		  "name": "app-cluster",
		  "plugins": [
		    {
		      "type": "bridge", "bridge": "$pod_bridge", "isGateway": true, "ipMasq": false, "hairpinMode": true,
		      "ipam": {"type": "host-local", "ranges": [[{"subnet": "$pod_cidr"}]], "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$node_dir/cni/ipam"}
		    },
		    {"type": "loopback"}
		  ]
		}
	EOF
	start "containerd$node_sfx" "${in_node[@]}" containerd --config "$c/config.toml"
	wait_for "containerd$node_sfx ready" 30 ctr --address "$c/containerd.sock" version
}

kubelet_up() {
	use_node "$1"
	local p=$S/pki
	mkdir -p "$node_dir/kubelet" "$node_dir/pod-logs"
	cat >"$node_dir/kubelet.yaml" <<-EOF
		apiVersion: kubelet.config.k8s.io/v1beta1
		kind: KubeletConfiguration
		address: $node_ip
		healthzBindAddress: 127.0.0.1
		authentication:
		  anonymous: {enabled: false}
		  webhook: {enabled: true}
		  x509: {clientCAFile: $p/ca.crt}
		authorization: {mode: Webhook}
		tlsCertFile: $p/kubelet$node_sfx.crt
		tlsPrivateKeyFile: $p/kubelet$node_sfx.key
		cgroupDriver: cgroupfs
		cgroupRoot: $cgroup_root
		containerRuntimeEndpoint: unix://$node_dir/containerd/containerd.sock
		clusterDNS: [$CLUSTER_DNS]
		clusterDomain: cluster.local
		resolvConf: ""
		podLogsDir: $node_dir/pod-logs
		failSwapOn: false
		serializeImagePulls: false
		maxPods: 60
		evictionHard: {memory.available: 100Mi, nodefs.available: 2%, imagefs.available: 2%}
		imageGCHighThresholdPercent: 99
		imageGCLowThresholdPercent: 98
		# A changed Secret reaches a pod's volume at the pod's next sync: every
		# 10 s here instead of the default minute, so that the key rotation's
		# three waits take seconds, not minutes. Nothing else depends on it;
		# make rotate waits for the pods however long their kubelets take.
		syncFrequency: 10s
	EOF
	# The zone label, which a cloud's node controller sets: the
	# Deployments' topology spread and the course's drain act on it. The
	# NodeRestriction admission plugin lets a kubelet set this label.
	start "kubelet$node_sfx" "${in_node[@]}" kubelet --config="$node_dir/kubelet.yaml" --kubeconfig="$p/kubelet$node_sfx.kubeconfig" \
		--root-dir="$node_dir/kubelet" --hostname-override="$node_name" --node-ip="$node_ip" \
		--node-labels="topology.kubernetes.io/zone=$node_zone"
	wait_for "node $node_name Ready" 120 node_ready "$node_name"
}

node_ready() {
	[[ $(kubectl get node "$1" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}') == True ]]
}

proxy_up() {
	use_node "$1"
	# NodePorts and the load balancer's health check ports (every
	# Service's healthCheckNodePort) on the node's address, where the load
	# balancer double sends; node 1 also on the loopback address, so that
	# 127.0.0.1:<nodePort> reaches a Service from this machine. Nothing is
	# opened on this machine's other addresses.
	local addresses="[$node_ip/32]"
	[[ $1 == 1 ]] && addresses="[$node_ip/32, 127.0.0.1/32]"
	cat >"$node_dir/kube-proxy.yaml" <<-EOF
		apiVersion: kubeproxy.config.k8s.io/v1alpha1
		kind: KubeProxyConfiguration
		clientConnection: {kubeconfig: $S/pki/kube-proxy.kubeconfig}
		mode: iptables
		clusterCIDR: $CLUSTER_CIDR
		hostnameOverride: $node_name
		healthzBindAddress: 127.0.0.1:10256
		metricsBindAddress: 127.0.0.1:10249
		nodePortAddresses: $addresses
		iptables: {localhostNodePorts: true}
		conntrack: {maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
	EOF
	start "kube-proxy$node_sfx" "${in_node[@]}" kube-proxy --config="$node_dir/kube-proxy.yaml"
	wait_for "kube-proxy$node_sfx ready" 60 "${in_node[@]}" curl -sf http://127.0.0.1:10256/healthz
}

# podman_infra runs podman on a storage of the cluster's own, so the
# cluster's images never mix with the host's and go with the state directory.
podman_infra() {
	podman --root "$S/podman/storage" --runroot "$S/podman/run" --storage-driver vfs \
		--cgroup-manager cgroupfs --events-backend none "$@"
}

# build_image NAME IMAGE: podman build images/NAME with the files staged in
# $S/images/NAME, then push IMAGE to the registry.
build_image() {
	local name=$1 image=$2 ctx=$S/images/$1
	cp -r "$here/images/$name/." "$ctx/"
	podman_infra build --quiet --layers=false --platform linux/amd64 -t "$image" "$ctx" >/dev/null
	podman_infra push --quiet --tls-verify=false "$image" "docker://$REGISTRY_ADDR/$(repo_path "$image")"
	log "image $image"
}

# repo_path IMAGE: where IMAGE lives in the local registry (the registry
# host dropped: containerd asks a mirror for the path alone).
repo_path() {
	local image=$1
	image=${image#*/}
	echo "$image"
}

# nginx_rootfs DIR lays out in DIR the root filesystem of the stand-in for
# nginx-unprivileged: build.sh's nginx (a current release, built from
# source) with the shared libraries it links, laid out like the official
# image, and as its entrypoint the project's template renderer
# (nginx-entrypoint, a static Go binary) instead of the image's envsubst
# scripts. No shell: nothing in the manifests or e2e.sh runs one in it.
nginx_rootfs() {
	local r=$1 f nginx_root
	nginx_root=$(dirname "$(dirname "$(dirname "$nginx_bin")")")
	[[ -x $nginx_bin ]] || die "no nginx at $nginx_bin: run $here/build.sh nginx"
	mkdir -p "$r"/{etc/nginx/conf.d,etc/nginx/templates,tmp,var/cache/nginx,usr/sbin,usr/share/nginx/html}
	chmod 1777 "$r/tmp"
	install -m 0755 "$nginx_bin" "$r/usr/sbin/nginx"
	# The frontend's preStop is a shell script (sh, sleep, touch), as the
	# official alpine image's busybox runs it.
	mkdir -p "$r/bin"
	install -m 0755 /bin/busybox "$r/bin/busybox"
	for f in sh sleep touch; do ln -sf busybox "$r/bin/$f"; done
	(cd "$here/../.." && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$r/docker-entrypoint" ./test/cluster/nginx-entrypoint)
	ldd "$nginx_bin" | grep -o '/[^ ]*' | sort -u | while read -r f; do
		mkdir -p "$r$(dirname "$f")"
		cp -L "$f" "$r$f"
	done
	cp "$nginx_root/etc/nginx/mime.types" "$r/etc/nginx/mime.types"
	install -m 0644 "$here/images/nginx/nginx.conf" "$r/etc/nginx/nginx.conf"
	install -m 0644 "$here/images/nginx/default.conf" "$r/etc/nginx/conf.d/default.conf"
	echo '<!doctype html><title>nginx</title><p>nginx' >"$r/usr/share/nginx/html/index.html"
	printf 'root:x:0:0:root:/root:/sbin/nologin\nnginx:x:101:101:nginx:/nonexistent:/sbin/nologin\n' >"$r/etc/passwd"
	printf 'root:x:0:\nnginx:x:101:\n' >"$r/etc/group"
	# nginx's cache directory belongs to its user, as in the official image.
	chown -R 101:101 "$r/var/cache/nginx"
}

images_up() {
	local t=$SECONDS
	mkdir -p "$S/images"/{pause,coredns,nginx,busybox,kube-network-policies}
	cp /bin/busybox "$S/images/pause/busybox"
	build_image pause "$PAUSE_IMAGE"
	cp /bin/busybox "$S/images/busybox/busybox"
	build_image busybox "$BUSYBOX_IMAGE"
	cp "$coredns_bin" "$S/images/coredns/coredns"
	build_image coredns "$COREDNS_IMAGE"
	nginx_rootfs "$S/images/nginx/rootfs"
	build_image nginx "$NGINX_IMAGE"
	cp "$netpol_bin" "$S/images/kube-network-policies/kube-network-policies"
	build_image kube-network-policies "$NETPOL_IMAGE"
	metrics_server_image
	log "images built and pushed in $((SECONDS - t))s"
}

dns_up() {
	sed -e "s|\${CLUSTER_DNS}|$CLUSTER_DNS|g" -e "s|\${COREDNS_IMAGE}|$COREDNS_IMAGE|g" \
		"$here/manifests/coredns.yaml" | kubectl apply -f - >/dev/null
	kubectl -n kube-system rollout status deployment/coredns --timeout=120s >/dev/null
	wait_for "cluster DNS answers" 30 busybox nslookup kubernetes.default.svc.cluster.local "$CLUSTER_DNS"
}

# netpol_up runs the NetworkPolicy agent (manifests/kube-network-policies.yaml)
# and waits until it has programmed its nftables table: from then on every
# NetworkPolicy is enforced.
netpol_up() {
	sed -e "s|\${NETPOL_IMAGE}|$NETPOL_IMAGE|g" "$here/manifests/kube-network-policies.yaml" | kubectl apply -f - >/dev/null
	kubectl -n kube-system rollout status daemonset/kube-network-policies --timeout=120s >/dev/null
	wait_for "NetworkPolicy agent's nftables table" 60 nft list table "${NETPOL_TABLE[@]}"
}

# clean_netpol removes the agent's nftables table. The agent removes it
# itself when it stops (its image's stop signal is SIGINT), not when killed;
# while the table is there without the agent, the new connections of the
# pods it had selected are dropped.
clean_netpol() {
	if nft list table "${NETPOL_TABLE[@]}" >/dev/null 2>&1; then
		nft delete table "${NETPOL_TABLE[@]}" && log "deleted nftables table ${NETPOL_TABLE[*]}"
	fi
	true
}

# ---- metrics-server and the aggregation layer (issue 15: autoscaling) -----

# The HPA controller's sync period on this cluster: 5 s instead of
# Kubernetes' 15 s, so the e2e's autoscaling step sees the HPA act sooner.
# Production clusters keep 15 s (GKE's and EKS's control planes are not
# tunable); kubernetes/check sizes the manifests' scale-down windows for it.
readonly HPA_SYNC_FLAG=--horizontal-pod-autoscaler-sync-period=5s

# pki_aggregation makes what the API server's aggregation layer needs to
# proxy to metrics-server: a front-proxy CA of its own (as kubeadm does: a
# client certificate of the cluster CA must not be able to claim any user
# through the request headers) and its front-proxy-client certificate, and
# metrics-server's serving certificate from the cluster CA, for the name
# the API server checks (metrics-server.kube-system.svc).
pki_aggregation() {
	(
		cd "$S/pki"
		umask 077
		openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out front-proxy-ca.key 2>/dev/null
		openssl req -x509 -new -key front-proxy-ca.key -subj /CN=app-cluster-front-proxy-ca -days 30 -out front-proxy-ca.crt
		sign() { # sign NAME SUBJECT CA EXTENSIONS
			openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null
			printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n%s\n' "$4" >"$1.ext"
			openssl req -new -key "$1.key" -subj "$2" |
				openssl x509 -req -CA "$3.crt" -CAkey "$3.key" -CAcreateserial -days 30 -extfile "$1.ext" -out "$1.crt" 2>/dev/null
			rm "$1.ext"
		}
		sign front-proxy-client /CN=front-proxy-client front-proxy-ca "extendedKeyUsage=clientAuth"
		sign metrics-server /CN=metrics-server ca "extendedKeyUsage=serverAuth"$'\n'"subjectAltName=DNS:metrics-server,DNS:metrics-server.kube-system,DNS:metrics-server.kube-system.svc"
	)
}

# apiserver_aggregation_flags prints, one a line, the API server's flags
# for the aggregation layer: whom to trust for request headers, the client
# certificate it proxies with, and proxying to the endpoints directly
# (the host reaches pod addresses on the bridge; no Service address needed).
apiserver_aggregation_flags() {
	local p=$S/pki
	printf '%s\n' --requestheader-client-ca-file="$p/front-proxy-ca.crt" \
		--requestheader-allowed-names=front-proxy-client \
		--requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
		--requestheader-extra-headers-prefix=X-Remote-Extra- \
		--proxy-client-cert-file="$p/front-proxy-client.crt" --proxy-client-key-file="$p/front-proxy-client.key" \
		--enable-aggregator-routing=true
}

metrics_server_image() {
	[[ -x $metrics_server_bin ]] || die "no metrics-server at $metrics_server_bin: run $here/build.sh metrics-server"
	mkdir -p "$S/images/metrics-server"
	cp "$metrics_server_bin" "$S/images/metrics-server/metrics-server"
	build_image metrics-server "$METRICS_SERVER_IMAGE"
}

# metrics_server_up deploys metrics-server (manifests/metrics-server.yaml)
# and waits until the API server serves metrics.k8s.io through it. The
# first figures come a resolution (15 s) later: kubectl top says "metrics
# not available yet" until then.
metrics_server_up() {
	local p=$S/pki t0=$SECONDS
	kubectl -n kube-system create secret tls metrics-server-tls --cert="$p/metrics-server.crt" --key="$p/metrics-server.key" >/dev/null
	sed -e "s|\${METRICS_SERVER_IMAGE}|$METRICS_SERVER_IMAGE|g" -e "s|\${CA_BUNDLE}|$(base64 -w0 <"$p/ca.crt")|g" \
		"$here/manifests/metrics-server.yaml" | kubectl apply -f - >/dev/null
	kubectl -n kube-system rollout status deployment/metrics-server --timeout=120s >/dev/null
	wait_for "metrics.k8s.io available" 60 kubectl wait apiservice v1beta1.metrics.k8s.io --for=condition=Available --timeout=1s
	log "metrics-server serving after $((SECONDS - t0))s"
}

up() {
	local t0=$SECONDS
	if [[ -d $S ]]; then
		for c in "${COMPONENTS[@]}"; do
			alive "$c" && die "already up (state in $S): run cluster.sh down first"
		done
		log "$S is left from an earlier run: cleaning it first"
		down
	fi
	"$here/build.sh" all
	local t_build=$((SECONDS - t0))
	check_host
	mkdir -p "$S"/{logs,pids}
	save_host
	# From here on a failure leaves a partial cluster: take it down again.
	trap 'log "up failed: logs in $S/logs; taking it down"; tail -n 20 "$S"/logs/*.log >&2 || true; down' ERR
	pki
	network
	namespaces
	node2_network
	lb_network
	node2_cgroups
	etcd_up
	registry_up
	apiserver_up
	controllers_up
	containerd_up 1
	containerd_up 2
	images_up
	kubelet_up 1
	kubelet_up 2
	proxy_up 1
	proxy_up 2
	lb_build
	dns_up
	netpol_up
	metrics_server_up
	trap - ERR
	log "up in $((SECONDS - t0))s (binaries: ${t_build}s); nodes $NODE_NAME at $NODE_IP ($NODE_ZONE), $NODE2_NAME at $NODE2_IP ($NODE2_ZONE)"
	env_exports >&2
}

# lb_build builds the load balancer double (lb/cmd/cloudlb) for cluster.sh lb.
lb_build() {
	local t=$SECONDS
	mkdir -p "$S/bin"
	(cd "$here/../.." && CGO_ENABLED=0 go build -trimpath -o "$S/bin/cloudlb" ./test/cluster/lb/cmd/cloudlb)
	log "cloudlb built in $((SECONDS - t))s"
}

# lb SERVICE PROFILE [CLOUDLB_FLAG…] does by hand what a cloud's service
# controller does for a Service of type LoadBalancer with
# externalTrafficPolicy: Local: it (re)starts the load balancer double
# (lb/cmd/cloudlb, with PROFILE's health checks and the flags given) at
# LB_IP, one per Service port (443 and 80), with every node as a backend
# at the port's nodePort and the Service's healthCheckNodePort; then it
# writes LB_IP into the Service's status, so that `kubectl get service`
# shows it as EXTERNAL-IP. ipMode Proxy says the address is a proxy's:
# kube-proxy then leaves connections to it alone, so they reach the
# double instead of being short-cut to the pods on this machine. The
# Service is looked up in kubectl's current namespace. Open connections
# through an earlier double are closed.
lb() {
	local svc=$1 profile=$2 hc nodes ip port name nodeport backends
	shift 2
	alive kube-apiserver || die "the cluster is not running: cluster.sh up first"
	hc=$(kubectl get service "$svc" -o 'jsonpath={.spec.healthCheckNodePort}')
	[[ -n $hc ]] || die "service $svc has no healthCheckNodePort: is it of type LoadBalancer with externalTrafficPolicy: Local?"
	nodes=$(kubectl get nodes -o 'jsonpath={range .items[*]}{.status.addresses[?(@.type=="InternalIP")].address}{"\n"}{end}')
	for name in "${LB_PROCS[@]}"; do
		stop "$name"
	done
	for port in 443 80; do
		name=lb-https
		[[ $port == 80 ]] && name=lb-http
		nodeport=$(kubectl get service "$svc" -o "jsonpath={.spec.ports[?(@.port==$port)].nodePort}")
		[[ -n $nodeport ]] || die "service $svc has no port $port"
		backends=()
		for ip in $nodes; do
			backends+=(-backend "$ip:$nodeport,$hc")
		done
		START_CGROUP= start "$name" nsenter --net="$S/ns/lb.net" -- "$S/bin/cloudlb" -listen "$LB_IP:$port" -profile "$profile" "${backends[@]}" "$@"
		wait_for "$name listening" 10 grep -q '"msg":"listening"' "$S/logs/$name.log" ||
			die "$name did not start: $(tail -n 3 "$S/logs/$name.log")"
	done
	kubectl patch service "$svc" --subresource=status --type=merge \
		-p "{\"status\":{\"loadBalancer\":{\"ingress\":[{\"ip\":\"$LB_IP\",\"ipMode\":\"Proxy\"}]}}}" >/dev/null
	# Until a node has passed its checks, the profile fails open or refuses.
	wait_for "load balancer ($profile): a node healthy" 60 grep -q '"msg":"node healthy' "$S/logs/lb-https.log"
	log "load balancer $LB_IP ($profile) for service $svc: backends $(echo $nodes), health check port $hc"
}

# push IMAGE… copies images from the host's podman storage into the local
# registry, where containerd finds them under their own names.
push() {
	alive registry || die "the cluster's registry is not running: cluster.sh up first"
	local image
	for image in "$@"; do
		podman manifest push --quiet --all --tls-verify=false "$image" "docker://$REGISTRY_ADDR/$(repo_path "$image")" 2>/dev/null ||
			podman push --quiet --tls-verify=false "$image" "docker://$REGISTRY_ADDR/$(repo_path "$image")"
		log "pushed $image"
	done
}

env_exports() {
	echo "export KUBECONFIG=$S/kubeconfig PATH=$bin:\$PATH"
}

status() {
	local c down=0
	for c in "${COMPONENTS[@]}"; do
		if alive "$c"; then echo "$c: running (pid $(cat "$S/pids/$c"))"; else echo "$c: not running" && down=1; fi
	done
	# The load balancer runs only once cluster.sh lb started it.
	for c in "${LB_PROCS[@]}"; do
		if alive "$c"; then echo "$c: running (pid $(cat "$S/pids/$c"))"; fi
	done
	return $down
}

# ---- down -----------------------------------------------------------------

# delete_pods has the kubelet stop every pod, so the CNI plugin removes their
# veths and addresses; then nothing runs in containerd.
delete_pods() {
	alive kube-apiserver && alive kubelet || return 0
	stop kube-controller-manager # or it would make new pods
	kubectl delete pods --all --all-namespaces --grace-period=0 --force --wait=false >/dev/null 2>&1 || true
	local n
	for n in 1 2; do
		use_node "$n"
		alive "kubelet$node_sfx" || continue
		wait_for "pods gone from $node_name" 60 \
			bash -c "[[ -z \$(ctr --address '$node_dir/containerd/containerd.sock' -n k8s.io tasks list -q) ]]" || true
	done
}

# kill_tasks N kills whatever still runs in node N's containerd, and the
# shims.
kill_tasks() {
	use_node "$1"
	local sock=$node_dir/containerd/containerd.sock id pid
	if alive "containerd$node_sfx"; then
		for id in $(ctr --address "$sock" -n k8s.io tasks list -q 2>/dev/null); do
			ctr --address "$sock" -n k8s.io tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
			ctr --address "$sock" -n k8s.io tasks delete -f "$id" >/dev/null 2>&1 || true
		done
	fi
	# The shims outlive containerd; only those serving this cluster's
	# containerd are ours.
	for pid in $(pgrep -f containerd-shim-runc-v2 || true); do
		if grep -qa -- "$sock" "/proc/$pid/cmdline" 2>/dev/null; then
			kill -KILL "$pid" 2>/dev/null && log "killed shim $pid"
		fi
	done
}

unmount_all() {
	local m
	# Deepest first; lazily, as a leftover process may still hold one.
	awk -v re="^($S|/run/containerd|/var/lib/kubelet)(/|\$)" '$2 ~ re {print $2}' /proc/mounts | sort -r |
		while read -r m; do
			umount -l "$m" 2>/dev/null && log "unmounted $m"
		done
	true
}

# clean_netfilter removes the KUBE-* and CNI-* chains, and the rules in
# other chains that jump to them, from the iptables and ip6tables tables.
clean_netfilter() {
	local cmd table rule chain
	if [[ -x $bin/kube-proxy ]]; then
		timeout 60 "$bin/kube-proxy" --cleanup >/dev/null 2>&1 || true
	fi
	for cmd in iptables ip6tables; do
		command -v "$cmd" >/dev/null || continue
		for table in filter nat mangle raw; do
			"$cmd" -t "$table" -S >/dev/null 2>&1 || continue
			while read -r rule; do
				eval "$cmd -t $table -D ${rule#-A }" 2>/dev/null || true
			done < <("$cmd" -t "$table" -S | grep -E '^-A ' | grep -vE '^-A (KUBE|CNI)-' | grep -E -- '-[jg] (KUBE|CNI)-')
			for chain in $("$cmd" -t "$table" -S | sed -n -E 's/^-N ((KUBE|CNI)-[^ ]*)$/\1/p'); do
				"$cmd" -t "$table" -F "$chain" 2>/dev/null || true
			done
			for chain in $("$cmd" -t "$table" -S | sed -n -E 's/^-N ((KUBE|CNI)-[^ ]*)$/\1/p'); do
				"$cmd" -t "$table" -X "$chain" 2>/dev/null || true
			done
		done
	done
}

clean_links() {
	local l
	if ip link show "$POD_BRIDGE" >/dev/null 2>&1; then
		for l in $(ip -o link show master "$POD_BRIDGE" | awk -F': ' '{print $2}' | cut -d@ -f1); do
			ip link del "$l" 2>/dev/null || true
		done
	fi
	# A veth pair goes with either end; node 2's pod bridge and veths go
	# with its network namespace.
	for l in "$NODE2_VETH" "$LB_VETH" "$POD_BRIDGE" "$NODE_BRIDGE"; do
		ip link del "$l" 2>/dev/null && log "deleted link $l"
	done
	true
}

# remove_cgroups kills any container process left in the kubepods cgroup
# trees (a shim killed before its containers leaves them running), and any
# process left in SYSTEM_CGROUP, then removes the trees, deepest first.
remove_cgroups() {
	local top pids
	for top in /sys/fs/cgroup/*/{"$CGROUP_NAME","$NODE2_CGROUP","$SYSTEM_CGROUP"} /sys/fs/cgroup/{"$CGROUP_NAME","$NODE2_CGROUP","$SYSTEM_CGROUP"}; do
		[[ -d $top ]] || continue
		pids=$(find "$top" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u)
		if [[ -n $pids ]]; then
			log "killing container processes left in $top: $(echo "$pids" | tr '\n' ' ')"
			echo "$pids" | xargs kill -KILL 2>/dev/null || true
			sleep 1
		fi
		find "$top" -depth -type d -exec rmdir {} + 2>/dev/null || true
		[[ -d $top ]] && log "cannot remove cgroup $top (still in use?)"
	done
	true
}

restore_host() {
	local line p
	if [[ -f $S/host/sysctl ]]; then
		while read -r line; do
			sysctl -qw "$line" 2>/dev/null || true
		done <"$S/host/sysctl"
	fi
	if [[ -f $S/host/created-paths ]]; then
		while read -r p; do
			[[ -n $p ]] && rm -rf "$p"
		done <"$S/host/created-paths"
	fi
	# The CNI library caches each attachment's result here, by network name.
	rm -f /var/lib/cni/results/app-cluster-* 2>/dev/null || true
}

down() {
	local c i
	trap - ERR
	if [[ ! -d $S ]]; then
		log "not up (no $S)"
	else
		for c in "${LB_PROCS[@]}"; do
			stop "$c"
		done
		delete_pods
		for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
			c=${COMPONENTS[i]}
			[[ $c == containerd ]] && kill_tasks 1
			[[ $c == containerd-2 ]] && kill_tasks 2
			stop "$c"
		done
		kill_tasks 1
		kill_tasks 2
		unmount_all
		clean_netfilter
		clean_netpol
		clean_links
		remove_cgroups
		restore_host
		rm -rf "$S" || die "cannot remove $S"
	fi
	log "down"
}

case ${1:-} in
up) up ;;
down) down ;;
push)
	shift
	push "$@"
	;;
env) env_exports ;;
lb)
	[[ -n ${3:-} ]] || die "usage: cluster.sh lb SERVICE PROFILE [CLOUDLB_FLAG…] (profiles: gke, gke-rbs, aws-elb, aws-nlb)"
	shift
	lb "$@"
	;;
status) status ;;
nginx-rootfs)
	[[ -n ${2:-} ]] || die "usage: cluster.sh nginx-rootfs DIR"
	nginx_rootfs "$2"
	;;
*) die "usage: cluster.sh up|down|push IMAGE…|env|status|lb SERVICE PROFILE [FLAG…]|nginx-rootfs DIR" ;;
esac
