#!/usr/bin/env bash
# e2e.sh is `make test-cluster`: the course, end to end, on a real
# two-node Kubernetes (cluster.sh), through the commands the tutorial
# (docs/tutorial.md) gives users, with the rollout load tester (cmd/rollout)
# sending logged-in requests to /secure through the frontend's load
# balancer during every change. Then it takes the cluster down and checks
# that the host is as before.
#
#   1 deploy      in a copy of the repository, as a learner's clone: make images,
#                 make set-registry, make certs, make secrets, make deploy
#                 OVERLAY=local: every Deployment rolls out, every pod Ready;
#                 make deploy with an image that does not exist says
#                 ImagePullBackOff and the image within its first 30 s report;
#                 the frontend Service gets its EXTERNAL-IP (cluster.sh lb)
#   2 network     (after 2 frontend) NetworkPolicies enforced (cluster.sh runs kube-network-policies):
#     policies    the frontend reaches auth and hello, probes and DNS pass; a pod
#                 of the app's labels reaches neither Service, no pod's app or ops
#                 port, no other namespace; another namespace's pod reaches
#                 neither Service and no ops port; with the agent stopped, all do
#   2 frontend    a certificate for that address (make certs HOSTS=, make
#                 deploy) rolls the frontend; through the load balancer over
#                 TLS: login, token, /secure; port 80 redirects to HTTPS;
#                 under load, the frontend rolled three ways: kubectl rollout
#                 restart, a changed nginx config (make deploy), a new
#                 certificate (make certs, make deploy)
#   3 pods        the monolith pod via kubectl port-forward, and the tutorial's
#                 kubectl debug recipe under the restricted profile; the
#                 secure-monolith's nginx sidecar, and the NodePort Service once
#                 it is labelled
#   4 probes      readiness off takes a hello pod out of the Service's endpoints;
#                 liveness off makes the kubelet restart the container
#   5 rolling     under load: hello 1.0.0 -> 2.0.0 (the tutorial's patch), a
#                 hello pod deleted, hello scaled down a pod and up again, auth 1.0.0 ->
#                 2.0.0 and back while the load logs in again and again, hello
#                 undone: no failed request, both versions seen
#   6 blue-green  the Service switched blue -> green -> blue under load: no
#   + canary      failed request, each switch seen at the edge within 5 s; a
#                 canary next to the stable track answers its replica share
#                 (1 in 4, 25 % +- 8) of the requests through the frontend
#   7 broken      a never-ready release stalls without losing capacity; undo recovers
#   8 rotation    the token keys rotated (make rotate STEP=add, promote, retire)
#                 under load by clients logged in before and after promote:
#                 no failed request, no token rejected by any pod (their
#                 metrics, read from Prometheus), no restart; then the old key's token gets 401
#   9 provider    make deploy OVERLAY=gke, then kubectl rollout restart of the
#                 frontend behind GKE's target pool timings (profile gke):
#                 no failed request, kept-alive or a new connection per request
#  10 drain       kubectl drain of the node with the most pods, under the same
#                 loads: no failed request, a PodDisruptionBudget holds back an
#                 eviction (kubectl drain says so); then uncordon
#  11 autoscaling under a load ramp through the frontend (cmd/rollout -ramp-to)
#                 hello's HorizontalPodAutoscaler scales it out, and in again
#                 when the ramp stops; a steady load sees no failed request either
#                 way (metrics-server: kubectl top works)
#  12 down        cluster down; no process, mount, link, route, namespace,
#                 cgroup, rule or directory left
#   1, 5, 8       monitoring (1 prometheus, 5 bad release, 8 alert resolved):
#                 see the block "monitoring (issue 14)" below
#
# Every kubectl and make command runs in a copy of the repository
# ($CLUSTER_E2E_DIR/src: the tracked and untracked files, not tls/ or bin/),
# since make set-registry rewrites kubernetes/. The commands are the
# tutorial's for GKE and EKS, with OVERLAY=local.
#
# The frontend is reached at its Service's EXTERNAL-IP, the address of the
# load balancer double (test/cluster/lb) that cluster.sh lb runs for it with
# a provider's health checks: gke-rbs for the course (overlays/local's drain
# is sized for it), gke for step 9 and 10 (overlays/gke's). The canary's
# share is measured through the frontend. All test traffic stays on this
# machine. Every load is two runs of cmd/rollout (load_start): one keeping
# its connections alive, one with a new connection per request. Settings:
# RATE (100 requests/s a run), RAMP_PEAK (step 11's ramp, 500 requests/s),
# STEPS (only those steps), CLUSTER_E2E_DIR
# (/var/tmp/app-cluster-e2e, removed at the end), KEEP_CLUSTER=1 leaves the
# cluster and that directory for a look (cluster.sh down removes the
# cluster).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
root=$(cd "$here/../.." && pwd -P)
cd "$root"

E=${CLUSTER_E2E_DIR:-/var/tmp/app-cluster-e2e}
RATE=${RATE:-100}
readonly NS=ud615 LOGIN=user:password
# The canary's share through the frontend: 25 % (1 pod of 4) +- 8 points
# over at least 400 requests a run; with a pod picked per request that is
# over four standard deviations (2.2 points at 400).
readonly CANARY_TOLERANCE=8 CANARY_SAMPLE=400
readonly SWITCH_MAX=5 # seconds until a blue-green switch shows at the edge
# auth_update's logins: every LOGIN_EVERY requests of each run, so that the
# two runs together log in once every 2 s (see auth_update).
LOGIN_EVERY=$((RATE * 2 * 2))
export GOTOOLCHAIN=${GOTOOLCHAIN:-go1.26.11}
# The learner's registry: a name under ghcr.io, which the cluster's
# containerd takes from cluster.sh's local registry.
export CONTAINER_ENGINE=podman PLATFORMS=linux/amd64 REGISTRY=ghcr.io/ud615/app
eval "$("$here/cluster.sh" env)" # KUBECONFIG and PATH (this cluster's kubectl)
state=$(dirname "$KUBECONFIG")    # cluster.sh's state directory
src=$E/src                        # the learner's clone
TLS_DIR=$src/tls

log() { echo "e2e: $*" >&2; }
fail() {
	log "FAIL: $*"
	return 1
}

# ---- bookkeeping: steps, timings, load runs ---------------------------------

passed=0 failed=0
t_start=$SECONDS

# step NAME FUNCTION runs FUNCTION in a subshell with errexit in force (bash
# ignores errexit in functions called as conditions) and records the result
# and duration. After a failed step the rest are skipped. STEPS="1 5" runs
# only those (with 0 and down, which always run): a quicker look at one lesson
# while working on it, never what CI runs.
step() {
	local name=$1 fn=$2 t=$SECONDS rc
	if [[ -n ${STEPS:-} && ${name%% *} != 0 && $fn != cluster_down && " $STEPS " != *" ${name%% *} "* ]]; then
		echo "SKIP|$name|not in STEPS" >>"$E/steps"
		return 0
	fi
	if ((failed > 0)); then
		echo "SKIP|$name|" >>"$E/steps"
		return 0
	fi
	log "==== $name"
	set +e
	(
		set -e
		trap 'kill_loads; kill_port_forwards' EXIT
		"$fn"
	)
	rc=$?
	set -e
	if ((rc == 0)); then
		passed=$((passed + 1))
		echo "PASS|$name|$((SECONDS - t))s" >>"$E/steps"
	else
		failed=$((failed + 1))
		echo "FAIL|$name|$((SECONDS - t))s" >>"$E/steps"
		log "$name failed"
	fi
}

# The load: during every change, two runs of the rollout tester (cmd/rollout)
# at RATE requests/s each through the frontend, logged in, GET /secure: one
# keeps its connections alive ("keepalive"), the other opens a new TCP and
# TLS connection for every request, as a curl loop does ("new"). Both must
# see no failed request. Each run stops by itself after 10 minutes (timeout
# ends it should the tester hang).
LOAD_MODES="keepalive new" # LOAD_MODES=keepalive load_start/load_stop NAME: one run (the ramp)

# load_start NAME [ARG…] starts both runs in the background, with ARGs for
# the tester (e.g. -login-every), and lets them reach a steady state first:
# the timelines show the change against it. LOAD_CA, if set, is the CA
# bundle the runs trust instead of tls/ca.pem.
load_start() {
	local name=$1 mode
	shift
	for mode in $LOAD_MODES; do
		# The login from the environment: an argument shows in the process list.
		ROLLOUT_LOGIN=$LOGIN timeout -s INT 660 "$E/rollout" -url "$(frontend_url)/secure" \
			-cacert "${LOAD_CA:-$TLS_DIR/ca.pem}" -rate "$RATE" -duration 600s \
			-keepalive="$([[ $mode == keepalive ]] && echo true || echo false)" "$@" >"$E/load-$name-$mode.log" 2>&1 &
		echo $! >"$E/load-$name-$mode.pid"
	done
	sleep 3
	for mode in $LOAD_MODES; do
		grep -q '^attacking' "$E/load-$name-$mode.log" || {
			cat "$E/load-$name-$mode.log" >&2
			fail "the load tester ($name, $mode) did not start"
		}
	done
}

# load_stop NAME [VERSION…] stops both runs after a few more seconds
# (LOAD_TAIL, 3), prints their per-second timelines and summaries, records
# their figures, and fails if a request failed, a run fell short of RATE,
# or one of VERSIONs never answered a run.
load_stop() {
	local name=$1 mode pid rc summary versions v achieved
	shift
	sleep "${LOAD_TAIL:-3}"
	for mode in $LOAD_MODES; do
		kill -INT "$(cat "$E/load-$name-$mode.pid")" 2>/dev/null || true
	done
	for mode in $LOAD_MODES; do
		pid=$(cat "$E/load-$name-$mode.pid")
		rm -f "$E/load-$name-$mode.pid"
		rc=0
		wait "$pid" || rc=$?
		echo "---- load tester: $name, $mode" >&2
		cat "$E/load-$name-$mode.log" >&2
		summary=$(sed -n 's/^summary: *//p' "$E/load-$name-$mode.log")
		versions=$(sed -n 's/^versions: *//p' "$E/load-$name-$mode.log")
		echo "$name|$mode|$summary|$versions" >>"$E/loads"
		[[ -n $summary ]] || fail "$name ($mode): the load tester printed no summary"
		((rc == 0)) || {
			# What failed, in the summary's notes too (CI shows the end of the log).
			echo "load $name ($mode) failed: $(sed -n 's/^failures: *//p' "$E/load-$name-$mode.log"); $(grep -m 3 '^error:' "$E/load-$name-$mode.log" | sed 's/^error: *//' | paste -sd ';' -)" | tee -a "$E/notes" >&2
			fail "$name ($mode): requests failed (load tester exit $rc)"
		}
		achieved=$(sed -E -n 's/.*\(([0-9]+)\.[0-9]\/s achieved\).*/\1/p' <<<"$summary")
		((achieved >= RATE * 95 / 100)) || fail "$name ($mode): $achieved requests/s achieved, want $RATE"
		for v in "$@"; do
			[[ " $versions" == *" $v="* ]] || fail "$name ($mode): version $v never answered ($versions)"
		done
	done
}

# kill_loads stops any tester still running (after a failed step).
kill_loads() {
	local f
	for f in "$E"/load-*.pid; do
		[[ -f $f ]] || continue
		kill -INT "$(cat "$f")" 2>/dev/null || true
		rm -f "$f"
	done
}

# frontend_url: the frontend Service's EXTERNAL-IP, the load balancer
# double's address (cluster.sh lb), as users reach it on a cloud.
frontend_url() {
	local ip
	ip=$(kubectl get service frontend -o 'jsonpath={.status.loadBalancer.ingress[0].ip}')
	[[ -n $ip ]] || fail "the frontend Service has no EXTERNAL-IP (cluster.sh lb frontend PROFILE)"
	echo "https://$ip"
}

# external_ip waits for the frontend Service's address, as the tutorial's
# loop does on a cloud, and prints it.
external_ip() {
	local ip t=$SECONDS
	until ip=$(kubectl get service frontend -o 'jsonpath={.status.loadBalancer.ingress[0].ip}') && [[ -n $ip ]]; do
		((SECONDS - t < 60)) || fail "no EXTERNAL-IP for the frontend Service within 60s"
		sleep 1
	done
	echo "$ip"
}

# port_forward NAME LOCAL:REMOTE starts kubectl port-forward to pod NAME and
# waits until it listens. kill_port_forwards stops them all.
port_forward() {
	local pod=$1 ports=$2
	timeout 300 kubectl port-forward "pod/$pod" "$ports" --address 127.0.0.1 >"$E/pf-$pod.log" 2>&1 &
	echo $! >>"$E/port-forwards"
	wait_until "port-forward to $pod" 20 grep -q Forwarding "$E/pf-$pod.log"
}

kill_port_forwards() {
	local pid
	[[ -f $E/port-forwards ]] || return 0
	while read -r pid; do
		kill "$pid" 2>/dev/null || true
	done <"$E/port-forwards"
	rm -f "$E/port-forwards"
}

# wait_until DESCRIPTION SECONDS COMMAND… polls COMMAND once a second.
wait_until() {
	local what=$1 limit=$2 t=$SECONDS
	shift 2
	until "$@" >/dev/null 2>&1; do
		((SECONDS - t < limit)) || fail "$what: not within ${limit}s"
		sleep 1
	done
	log "$what (after $((SECONDS - t))s)"
}

# ---- host snapshot -------------------------------------------------------------

# host_state prints what the cluster may change on the host, one fact a
# line, so that before and after can be compared.
host_state() {
	local s
	for s in net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables \
		net.ipv4.conf.all.route_localnet vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops; do
		echo "sysctl $s=$(sysctl -n "$s" 2>/dev/null)"
	done
	echo "iptables rules/chains named KUBE-/CNI-: $( (iptables-save 2>/dev/null; ip6tables-save 2>/dev/null) | grep -cE '(KUBE|CNI)-' || true)"
	# nftables tables other than iptables-nft's own (those stay once made):
	# the NetworkPolicy agent's inet kube-network-policies.
	nft list tables 2>/dev/null | grep -vE '^table (ip|ip6|arp|bridge) (filter|nat|mangle|raw|security)$' | sed 's/^/nftables /' || true
	ip -o link show | awk -F': ' '$2 ~ /^app/ {print "link " $2}'
	ip route show | awk '/^10\.(96|244|200)\./ {print "route " $0}'
	awk -v re="^($state|/run/containerd|/var/lib/kubelet)(/|\$)" '$2 ~ re {print "mount " $2}' /proc/mounts
	for s in "$state" /run/containerd /var/lib/kubelet /var/log/containers /var/lib/cni /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/*/app-node-2 /sys/fs/cgroup/*/app-system; do
		[[ -e $s ]] && echo "path $s"
	done
	pgrep -af "$state|containerd-shim" | sed 's/^[0-9]* /process /' || true
}

# ---- the steps ---------------------------------------------------------------

cluster_up() {
	"$here/cluster.sh" up
}

# images copies the repository as a learner's clone, builds and pushes
# the images the tutorial's section 2 builds, and the load tester.
images() {
	local v
	mkdir -p "$src"
	# As root, git would refuse a checkout owned by someone else.
	git -c safe.directory='*' -C "$root" ls-files -z --cached --others --exclude-standard |
		(cd "$root" && tar --null --ignore-failed-read -T - -cf -) | tar -xf - -C "$src"
	cd "$src"
	for v in 1.0.0 2.0.0; do
		make -s images VERSION=$v
	done
	"$here/cluster.sh" push "$REGISTRY"/{auth,hello,monolith}:1.0.0 "$REGISTRY"/{auth,hello}:2.0.0
	go build -o "$E/rollout" ./cmd/rollout
}

# deploy runs the tutorial's sections 2 (set-registry), 3 (the namespace),
# 4 (certificates and secrets) and 10 (make deploy).
deploy() {
	cd "$src"
	if make -s deploy OVERLAY=local >"$E/placeholder.log" 2>&1; then
		fail "make deploy ran with the placeholder registry"
	fi
	grep -q 'make set-registry REGISTRY=' "$E/placeholder.log" || {
		cat "$E/placeholder.log" >&2
		fail "make deploy with the placeholder registry did not say to run make set-registry"
	}
	make -s set-registry REGISTRY="$REGISTRY"
	kubectl create namespace "$NS"
	kubectl config set-context --current --namespace="$NS"
	kubectl label namespace "$NS" pod-security.kubernetes.io/enforce=restricted
	make -s certs
	make -s secrets
	make -s deploy OVERLAY=local
	kubectl wait pods --all --for=condition=Ready --timeout=120s
	kubectl get deployments,pods -o wide
	[[ -z $(kubectl get namespace default -o 'jsonpath={.metadata.labels.pod-security\.kubernetes\.io/enforce}') ]] ||
		fail "namespace default got a Pod Security label"

	# A release whose image does not exist: make deploy says so while it
	# waits, with the image's name, then gives up (ROLLOUT_TIMEOUT).
	local file=kubernetes/deployments/hello.yaml missing=$REGISTRY/hello:0.0.0-missing
	cp "$file" "$E/hello.yaml"
	sed -i "s|image: $REGISTRY/hello:1.0.0|image: $missing|" "$file"
	if ROLLOUT_TIMEOUT=40 make -s deploy OVERLAY=local >"$E/diagnosis.log" 2>&1; then
		fail "make deploy with a missing image succeeded"
	fi
	cp "$E/hello.yaml" "$file"
	cat "$E/diagnosis.log" >&2
	grep -Eq "(ImagePullBackOff|ErrImagePull).*$missing" "$E/diagnosis.log" ||
		fail "make deploy did not say ImagePullBackOff and the image $missing"
	make -s deploy OVERLAY=local

	# The cloud's part: a load balancer for the frontend Service, here the
	# double with GKE's backend service-based health check (gke-rbs, what
	# overlays/gke asks for; overlays/local's drain is sized for it).
	"$here/cluster.sh" lb frontend gke-rbs
	log "frontend's EXTERNAL-IP: $(external_ip)"
	kubectl get service frontend
	kubectl get nodes -L topology.kubernetes.io/zone
	echo "deploy: pods per node:" | tee -a "$E/notes"
	pods_per_node | sed 's/^/    /' | tee -a "$E/notes"
}

# ---- network policies (kubernetes/networkpolicies.yaml, enforced) -----------

# probe_pod NAME NAMESPACE LABELS COMMAND prints a throwaway pod of the
# cluster's busybox that passes the restricted Pod Security profile, with
# LABELS (a YAML flow mapping) and COMMAND run by sh.
probe_pod() {
	cat <<-X
		apiVersion: v1
		kind: Pod
		metadata: {name: $1, namespace: $2, labels: $3}
		spec:
		  automountServiceAccountToken: false
		  terminationGracePeriodSeconds: 0
		  securityContext: {runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, seccompProfile: {type: RuntimeDefault}}
		  containers:
		    - name: probe
		      image: busybox:1.37
		      command: [sh, -c, '$4']
		      securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
	X
}

# reach NAMESPACE/POD NAME=URL… tries every URL at once from inside POD (an
# HTTP GET given 3 s by timeout: busybox 1.35's wget -T crashes) and prints
# "NAME open" if a server answered (any status: the connection was made),
# "NAME dropped" if the attempt was cut off (a policy drops the packets;
# nothing answers), or "NAME error: …" for anything else (refused, no route:
# a broken network).
reach() {
	local pod=${1#*/} ns=${1%%/*} script="" t
	shift
	for t in "$@"; do
		script+="p ${t%%=*} ${t#*=} 2>/dev/null & "
	done
	kubectl -n "$ns" exec "$pod" -- sh -c '
		p() {
			if out=$(timeout 3 wget -q -O /dev/null "$2" 2>&1); then echo "$1 open"; return; fi
			case $out in
			*"server returned error"*) echo "$1 open" ;;
			"") echo "$1 dropped" ;;
			*) echo "$1 error: $out" ;;
			esac
		}
		'"$script"' wait' | sort
}

# netpol_drops prints how many packets the NetworkPolicy agents dropped
# (kube_network_policies_packet_count{verdict="drop"}, read from each agent's
# metrics through the API server's pod proxy).
netpol_drops() {
	local pod n=0
	for pod in $(kubectl -n kube-system get pods -l k8s-app=kube-network-policies -o 'jsonpath={.items[*].metadata.name}'); do
		n=$((n + $(kubectl get --raw "/api/v1/namespaces/kube-system/pods/$pod:9080/proxy/metrics" |
			awk '/^kube_network_policies_packet_count\{/ && /verdict="drop"/ {n += $NF} END {printf "%d", n}')))
	done
	echo $n
}

# expect_reach WANT RESULTS: every line of RESULTS ("NAME STATE") says WANT.
expect_reach() {
	local want=$1 results=$2 bad
	echo "$results" >&2
	bad=$(awk -v want="$want" '$2 != want' <<<"$results")
	[[ -z $bad ]] || fail "want every probe $want; not: $(tr '\n' ';' <<<"$bad")"
}

# ready_pod_ip SELECTOR: the address of a ready pod that SELECTOR selects.
ready_pod_ip() {
	kubectl get pods -l "$1" -o json | jq -re '[.items[] | select(.metadata.deletionTimestamp == null)
		| select(any(.status.conditions[]?; .type == "Ready" and .status == "True"))][0].status.podIP'
}

only_dropped() {
	[[ $(reach "$NS/np-intruder" "$1") == "${1%%=*} dropped" ]]
}

# network_policies proves kubernetes/networkpolicies.yaml enforced both ways
# (cluster.sh runs the NetworkPolicy agent, kube-network-policies, from the
# start, so every step runs with them): the frontend reaches auth and hello
# (a login through it), the kubelet's probes pass (every pod Ready, none
# restarted), DNS answers; a throwaway pod labelled as one of the app's
# (so the default-deny policy selects it) reaches neither Service, no pod's
# app or ops port, no pod of another namespace; a pod of another namespace
# reaches neither Service and no ops port, but the frontend's TLS port (open
# to anyone). Each "dropped" is then shown to be the agent's doing: its drop
# counter grew, and with the agent stopped the same probes all connect.
network_policies() {
	local auth_ip hello_ip auth_pod hello_pod outsider_ip frontend_ip token drops results
	cd "$src"
	kubectl create namespace np-outside
	probe_pod np-intruder "$NS" '{app.kubernetes.io/part-of: ud615}' 'sleep 600' | kubectl apply -f -
	probe_pod np-outsider np-outside '{}' 'httpd -p 8080 -h /bin; sleep 600' | kubectl apply -f -
	kubectl wait pod np-intruder --for=condition=Ready --timeout=60s
	kubectl -n np-outside wait pod np-outsider --for=condition=Ready --timeout=60s
	auth_ip=$(kubectl get service auth -o 'jsonpath={.spec.clusterIP}')
	hello_ip=$(kubectl get service hello -o 'jsonpath={.spec.clusterIP}')
	frontend_ip=$(kubectl get service frontend -o 'jsonpath={.spec.clusterIP}')
	auth_pod=$(ready_pod_ip app=auth)
	hello_pod=$(ready_pod_ip app=hello)
	outsider_ip=$(kubectl -n np-outside get pod np-outsider -o 'jsonpath={.status.podIP}')

	# Allowed: the frontend to auth (login) and to hello (/secure), the
	# kubelet's probes, DNS from a pod allowed nothing but DNS.
	token=$(login_token)
	curl -fsS --cacert "$TLS_DIR/ca.pem" -H "Authorization: Bearer $token" "$(frontend_url)/secure" >/dev/null
	kubectl wait deployments --all --for=condition=Available --timeout=30s
	[[ -z $(kubectl get pods -l 'app in (auth,hello,frontend)' -o 'jsonpath={.items[*].status.containerStatuses[?(@.restartCount>0)].name}') ]] ||
		fail "a pod of auth, hello or the frontend restarted"
	kubectl exec np-intruder -- nslookup hello.$NS.svc.cluster.local >/dev/null || fail "no DNS from a pod allowed DNS"

	local intruder=(svc-auth="http://$auth_ip/version" svc-hello="http://$hello_ip/version"
		auth-ops="http://$auth_pod:8081/healthz" hello-ops="http://$hello_pod:8081/healthz"
		hello-app="http://$hello_pod:8080/version" other-namespace="http://$outsider_ip:8080/")
	local outsider=(svc-auth="http://$auth_ip/version" svc-hello="http://$hello_ip/version"
		auth-ops="http://$auth_pod:8081/healthz" hello-ops="http://$hello_pod:8081/healthz")
	drops=$(netpol_drops)
	results=$(reach "$NS/np-intruder" "${intruder[@]}")
	expect_reach dropped "$results"
	results=$(reach np-outside/np-outsider "${outsider[@]}")
	expect_reach dropped "$results"
	# The outsider's network works: the frontend's TLS port is open to all.
	results=$(reach np-outside/np-outsider frontend-https="http://$frontend_ip:443/")
	expect_reach open "$results"
	drops=$(($(netpol_drops) - drops))
	((drops >= ${#intruder[@]} + ${#outsider[@]})) ||
		fail "the agent counted $drops drops for $((${#intruder[@]} + ${#outsider[@]})) dropped probes"
	# The API server listens on this node's address, and a node's traffic
	# with its own pods is always allowed (the NetworkPolicy spec): noted,
	# not asserted (on GKE and EKS the control plane is off the node).
	echo "network policies: from a pod allowed only DNS, the API server's ClusterIP (on the pod's node): $(reach "$NS/np-intruder" api="http://$(kubectl -n default get service kubernetes -o 'jsonpath={.spec.clusterIP}'):443/" | cut -d' ' -f2-)" | tee -a "$E/notes"

	# The same probes with the agent stopped (it removes its rules as it
	# ends): every one connects, so the drops above were the policies'.
	kubectl -n kube-system patch daemonset kube-network-policies -p '{"spec":{"template":{"spec":{"nodeSelector":{"e2e.ud615/no-network-policies":"true"}}}}}'
	kubectl -n kube-system wait pods -l k8s-app=kube-network-policies --for=delete --timeout=60s
	results=$(reach "$NS/np-intruder" "${intruder[@]}")
	expect_reach open "$results"
	results=$(reach np-outside/np-outsider "${outsider[@]}")
	expect_reach open "$results"
	kubectl -n kube-system patch daemonset kube-network-policies -p '{"spec":{"template":{"spec":{"nodeSelector":null}}}}'
	kubectl -n kube-system rollout status daemonset/kube-network-policies --timeout=60s
	wait_until "the policies enforced again" 60 only_dropped "svc-hello=http://$hello_ip/version"
	echo "network policies: $((${#intruder[@]} + ${#outsider[@]})) probes dropped by the agent ($drops packets), open with it stopped; frontend to auth and hello, DNS, probes allowed" | tee -a "$E/notes"
	kubectl delete pod np-intruder --wait=false
	kubectl delete namespace np-outside --wait=false
}

frontend() {
	local url token code ip
	cd "$src"
	# Before the load balancer has a certificate for its address: the
	# frontend at node 1's NodePort on this machine, with the localhost
	# certificate of make certs.
	curl -fsS --cacert "$TLS_DIR/ca.pem" \
		"https://127.0.0.1:$(kubectl get service frontend -o 'jsonpath={.spec.ports[?(@.name=="https")].nodePort}')/" >/dev/null

	# A new certificate for the load balancer's address, as the tutorial
	# makes one: make deploy rolls the frontend by itself, and only it.
	local secret hello_tmpl
	ip=$(external_ip)
	secret=$(kubectl get deployment frontend -o 'jsonpath={.spec.template.spec.volumes[?(@.name=="tls")].secret.secretName}')
	hello_tmpl=$(hello_template)
	make -s certs FORCE=1 HOSTS="$ip"
	make -s deploy OVERLAY=local
	[[ $(kubectl get deployment frontend -o 'jsonpath={.spec.template.spec.volumes[?(@.name=="tls")].secret.secretName}') != "$secret" ]] ||
		fail "a new certificate kept the frontend's Secret $secret"
	[[ $(hello_template) == "$hello_tmpl" ]] ||
		fail "a new certificate changed deployment hello"
	log "new certificate: frontend rolled to $(kubectl get deployment frontend -o 'jsonpath={.spec.template.spec.volumes[?(@.name=="tls")].secret.secretName}')"

	# Through the load balancer, as users: HTTPS with the new certificate.
	url=$(frontend_url)
	curl -fsS --cacert "$TLS_DIR/ca.pem" "$url/" >/dev/null
	code=$(curl -sS -o /dev/null -w '%{http_code}' --cacert "$TLS_DIR/ca.pem" "$url/secure")
	[[ $code == 401 ]] || fail "GET /secure without a token: $code, want 401"
	token=$(curl -fsS --cacert "$TLS_DIR/ca.pem" -u "$LOGIN" -X POST "$url/login" | jq -r .token)
	[[ -n $token && $token != null ]] || fail "no token from /login"
	curl -fsS --cacert "$TLS_DIR/ca.pem" -H "Authorization: Bearer $token" "$url/secure"
	echo
	# Plain HTTP (the load balancer's port 80) answers with a redirect to HTTPS.
	code=$(curl -sS -o /dev/null -w '%{http_code}' "http://$ip/")
	[[ $code == 308 ]] || fail "GET http://$ip/ : $code, want 308"

	frontend_restart
	frontend_config
	frontend_certificate
}

# hello_template prints deployment hello's pod template: what a change that
# rolls it changes (its generation also counts the HPA's scaling).
hello_template() {
	kubectl get deployment hello -o json | jq -cS .spec.template
}

# frontend_rolled NAME waits, after a change that rolls the frontend, until
# its old pods have drained and stopped (the load's kept-alive connections
# were on them), then stops the load NAME at once: the drain was its tail.
frontend_rolled() {
	kubectl rollout status deployment/frontend --timeout=180s
	wait_until "the old frontend pods gone" 120 no_terminating app=frontend
	LOAD_TAIL=0 load_stop "$1"
}

# frontend_restart: kubectl rollout restart, under load.
frontend_restart() {
	load_start frontend-restart
	kubectl rollout restart deployment/frontend
	frontend_rolled frontend-restart
}

# frontend_config: a changed nginx config, as a user edits the template:
# make deploy's generator makes a new ConfigMap, which rolls the frontend.
# The change shows: /healthz answers with new text.
frontend_config() {
	local conf body
	conf=$(kubectl get deployment frontend -o 'jsonpath={.spec.template.spec.volumes[?(@.name=="templates")].configMap.name}')
	grep -q 'return 200 "ok\\n";' nginx/frontend.conf.template || fail "nginx/frontend.conf.template has no /healthz answer to change"
	sed -i 's|return 200 "ok\\n";|return 200 "ok, config 2\\n";|' nginx/frontend.conf.template
	load_start frontend-config
	make -s deploy OVERLAY=local
	frontend_rolled frontend-config
	[[ $(kubectl get deployment frontend -o 'jsonpath={.spec.template.spec.volumes[?(@.name=="templates")].configMap.name}') != "$conf" ]] ||
		fail "a changed nginx config kept the frontend's ConfigMap $conf"
	body=$(curl -fsS --cacert "$TLS_DIR/ca.pem" "$(frontend_url)/healthz")
	[[ $body == "ok, config 2" ]] || fail "GET /healthz after the config change: $body, want \"ok, config 2\""
	log "changed nginx config: frontend rolled to $(kubectl get deployment frontend -o 'jsonpath={.spec.template.spec.volumes[?(@.name=="templates")].configMap.name}')"
}

# frontend_certificate: a new certificate, as the tutorial makes one for the
# load balancer's address: make deploy rolls the frontend by itself, and
# only it. certgen makes a new CA each time (it keeps no CA key), so the
# load trusts the old and the new CA, as clients of a public CA trust both
# the old and the renewed certificate.
frontend_certificate() {
	local secret hello_tmpl host
	secret=$(kubectl get deployment frontend -o 'jsonpath={.spec.template.spec.volumes[?(@.name=="tls")].secret.secretName}')
	hello_tmpl=$(hello_template)
	host=$(frontend_url)
	host=${host#https://}
	host=${host%:*}
	cp "$TLS_DIR/ca.pem" "$E/ca-old.pem"
	make -s certs FORCE=1 HOSTS="$host"
	cat "$E/ca-old.pem" "$TLS_DIR/ca.pem" >"$E/ca-both.pem"
	LOAD_CA=$E/ca-both.pem load_start frontend-certificate
	make -s deploy OVERLAY=local
	frontend_rolled frontend-certificate
	[[ $(kubectl get deployment frontend -o 'jsonpath={.spec.template.spec.volumes[?(@.name=="tls")].secret.secretName}') != "$secret" ]] ||
		fail "a new certificate kept the frontend's Secret $secret"
	[[ $(hello_template) == "$hello_tmpl" ]] ||
		fail "a new certificate changed deployment hello"
	curl -fsS --cacert "$TLS_DIR/ca.pem" "$(frontend_url)/" >/dev/null
	log "new certificate: frontend rolled to $(kubectl get deployment frontend -o 'jsonpath={.spec.template.spec.volumes[?(@.name=="tls")].secret.secretName}'), served with the new CA"
}

pods() {
	local token code
	cd "$src"
	# The tutorial's section 4 before the pods: tls-certs gets the current
	# certificate (step 2 made a new one).
	make -s secrets
	kubectl create -f kubernetes/pods/monolith.yaml
	kubectl create -f kubernetes/pods/secure-monolith.yaml
	kubectl wait pods monolith secure-monolith --for=condition=Ready --timeout=90s
	port_forward monolith 10080:8080
	curl -fsS http://127.0.0.1:10080/ && echo
	code=$(curl -sS -o /dev/null -w '%{http_code}' http://127.0.0.1:10080/secure)
	[[ $code == 401 ]] || fail "monolith /secure without a token: $code, want 401"
	token=$(curl -fsS -u "$LOGIN" http://127.0.0.1:10080/login | jq -r .token)
	curl -fsS -H "Authorization: Bearer $token" http://127.0.0.1:10080/secure && echo
	kubectl logs monolith -c monolith --tail=2

	# The tutorial's kubectl debug recipe, with a command instead of -it:
	# busybox's root user must become the pod's under --profile=restricted
	# (the namespace enforces it), and share the monolith's processes.
	kubectl debug monolith --image=busybox:1.37 --target=monolith --profile=restricted -c debugger -- sh -c 'id -u; ps'
	wait_until "the debug container ran" 60 debug_done
	kubectl logs monolith -c debugger >"$E/debug.log"
	cat "$E/debug.log" >&2
	[[ $(head -n 1 "$E/debug.log") == 65532 ]] || fail "the debug container ran as $(head -n 1 "$E/debug.log"), want 65532"
	grep -q monolith "$E/debug.log" || fail "the debug container does not see the monolith's process"

	# The nginx sidecar: TLS on 8443, proxying to the monolith.
	port_forward secure-monolith 10443:8443
	curl -fsS --cacert "$TLS_DIR/ca.pem" https://localhost:10443/ && echo
	token=$(curl -fsS --cacert "$TLS_DIR/ca.pem" -u "$LOGIN" https://localhost:10443/login | jq -r .token)
	curl -fsS --cacert "$TLS_DIR/ca.pem" -H "Authorization: Bearer $token" https://localhost:10443/secure && echo

	# The NodePort Service has no endpoints until the pod is labelled.
	kubectl create -f kubernetes/services/monolith.yaml
	code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 3 --cacert "$TLS_DIR/ca.pem" https://localhost:31000/ || true)
	[[ $code != 200 ]] || fail "the monolith NodePort answered before any pod was labelled"
	kubectl label pods secure-monolith secure=enabled
	wait_until "NodePort 31000 answers" 20 curl -fsS --max-time 3 --cacert "$TLS_DIR/ca.pem" https://localhost:31000/
	kill_port_forwards
}

debug_done() {
	[[ -n $(kubectl get pod monolith -o 'jsonpath={.status.ephemeralContainerStatuses[?(@.name=="debugger")].state.terminated}') ]]
}

# endpoint_ready POD: yes, no or absent, as hello's EndpointSlices say.
endpoint_ready() {
	kubectl get endpointslices -l kubernetes.io/service-name=hello -o json |
		jq -r --arg pod "$1" '[.items[].endpoints[]? | select(.targetRef.name == $pod) | .conditions.ready] |
			if length == 0 then "absent" elif .[0] then "yes" else "no" end'
}

endpoint_is() {
	[[ $(endpoint_ready "$1") == "$2" ]]
}

# toggle URL WANT flips a probe with POST URL, which answers with the probe's
# new status code.
toggle() {
	local code
	code=$(curl -sS -o /dev/null -w '%{http_code}' -X POST "$1")
	[[ $code == "$2" ]] || fail "POST $1: $code, want $2"
}

restarts() {
	kubectl get pod "$1" -o 'jsonpath={.status.containerStatuses[0].restartCount}'
}

restarted() {
	(($(restarts "$1") >= 1))
}

probes() {
	local pod
	cd "$src"
	pod=$(kubectl get pods -l app=hello,track=stable -o 'jsonpath={.items[0].metadata.name}')
	[[ $(endpoint_ready "$pod") == yes ]] || fail "$pod is not a ready endpoint of hello"
	port_forward "$pod" 10081:8081
	toggle http://127.0.0.1:10081/readiness/status 503
	wait_until "$pod out of hello's endpoints" 30 endpoint_is "$pod" no
	kubectl get pods -l app=hello
	toggle http://127.0.0.1:10081/readiness/status 200
	wait_until "$pod back in hello's endpoints" 30 endpoint_is "$pod" yes
	kill_port_forwards

	# Liveness, as the tutorial does it: on the healthy-monolith pod.
	kubectl create -f kubernetes/pods/healthy-monolith.yaml
	kubectl wait pod healthy-monolith --for=condition=Ready --timeout=60s
	[[ $(restarts healthy-monolith) == 0 ]] || fail "healthy-monolith restarted already"
	port_forward healthy-monolith 10082:8081
	toggle http://127.0.0.1:10082/healthz/status 503
	wait_until "the kubelet restarted healthy-monolith" 90 restarted healthy-monolith
	kill_port_forwards
	kubectl wait pod healthy-monolith --for=condition=Ready --timeout=60s
	kubectl delete -f kubernetes/pods/healthy-monolith.yaml -f kubernetes/pods/monolith.yaml --wait=false
}

# no_terminating [SELECTOR]: no pod (of SELECTOR) of the namespace is
# terminating.
no_terminating() {
	[[ $(kubectl get pods ${1:+-l "$1"} -o json | jq '[.items[] | select(.metadata.deletionTimestamp)] | length') == 0 ]]
}

# rolling is the tutorial's rolling update of hello and auth (their 2.0.0
# patches) and undo, and the other ways a running Service's pods change:
# a pod deleted, the Deployment scaled down and up.
rolling() {
	cd "$src"
	hello_update
	hello_delete_pod
	hello_scale
	auth_update
	hello_undo
}

hello_update() {
	load_start rolling-update
	kubectl patch deployment hello --patch-file kubernetes/patches/hello-2.0.0.yaml
	kubectl rollout status deployment/hello --timeout=180s
	load_stop rolling-update 1.0.0 2.0.0
	kubectl get replicasets -l app=hello -L version
	kubectl rollout history deployment/hello
}

# hello_delete_pod: kubectl delete pod waits until the pod is gone (its
# drain done); its ReplicaSet has started a replacement meanwhile. The pod
# is a running one, not one the update is still stopping.
hello_delete_pod() {
	local pod
	pod=$(kubectl get pods -l app=hello,track=stable -o json |
		jq -r '[.items[] | select(.metadata.deletionTimestamp == null)][0].metadata.name')
	load_start delete-pod
	kubectl delete pod "$pod"
	kubectl rollout status deployment/hello --timeout=120s
	load_stop delete-pod 2.0.0
}

# hello_scale: kubectl scale down by one pod, then up again, under load,
# while hello's HPA owns the count: the Deployment stops a pod (it drains),
# then starts one. One pod, not down to 1: the HPA may have scaled hello
# out for this very load (two runs at RATE), and a cut below what the load
# needs is a capacity test, not a drain test. The HPA may step in (it
# corrects the count to what the metrics ask for, not to what it was), so
# each wait is for a settled Deployment, whatever count it settles at.
hello_scale() {
	local want before after
	want=$(kubectl get deployment hello -o 'jsonpath={.spec.replicas}')
	before=$(kubectl get pods -l app=hello,track=stable -o 'jsonpath={.items[*].metadata.name}')
	load_start scale
	kubectl scale deployment/hello --replicas=$((want - 1))
	wait_until "hello scaled down, every pod ready, none terminating" 120 settled
	after=$(kubectl get pods -l app=hello,track=stable -o 'jsonpath={.items[*].metadata.name}')
	kubectl scale deployment/hello --replicas="$want"
	wait_until "hello scaled up, every pod ready, none terminating" 120 settled
	load_stop scale 2.0.0
	local kept=0 p
	for p in $before; do
		[[ " $after " == *" $p "* ]] && kept=$((kept + 1))
	done
	((kept >= want - 1)) || fail "kubectl scale --replicas=$((want - 1)) kept $kept of the $want pods ($before -> $after), want $((want - 1))"
	kubectl describe hpa hello | sed -n '/^Events:/,$p' | tail -n 3 >&2
}

# settled: hello's pods are as many as it asks for, all ready, none
# terminating.
settled() {
	local replicas
	replicas=$(replicas_of hello)
	[[ $(ready_of hello)/$(kubectl get deployment hello -o 'jsonpath={.status.updatedReplicas}') == "$replicas/$replicas" ]] &&
		pods_are app=hello,track=stable "$replicas"
}

# pods_are SELECTOR N: N pods of SELECTOR, none terminating.
pods_are() {
	[[ $(kubectl get pods -l "$1" -o json | jq '.items | length') == "$2" ]] && no_terminating "$1"
}

# auth_update: auth's patch (image and version labels), then undo, under
# a load that logs in again as it goes. auth allows a client network 30
# successful logins, then one every 2 s, per pod (DefaultLoginLimits), and
# the load comes from one address: each run logs in every LOGIN_EVERY
# requests, so the two together log in once every 2 s, the pace auth keeps
# up with forever: no login may be refused, and none is.
auth_update() {
	load_start auth-update -login-every "$LOGIN_EVERY"
	kubectl patch deployment auth --patch-file kubernetes/patches/auth-2.0.0.yaml
	kubectl rollout status deployment/auth --timeout=180s
	kubectl get pods -l app=auth -L version
	[[ $(kubectl get replicasets -l app=auth,version=2.0.0 -o 'jsonpath={.items[*].status.readyReplicas}') == 2 ]] ||
		fail "no ReplicaSet of auth with 2 ready pods labelled version=2.0.0"
	kubectl rollout undo deployment/auth
	kubectl rollout status deployment/auth --timeout=180s
	load_stop auth-update login/1.0.0 login/2.0.0
}

hello_undo() {
	load_start rollout-undo
	kubectl rollout undo deployment/hello
	kubectl rollout status deployment/hello --timeout=180s
	load_stop rollout-undo 2.0.0 1.0.0
}

# lines NAME: how many lines run NAME (e.g. canary-new) has printed so far.
lines() {
	wc -l <"$E/load-$1.log"
}

# only_version NAME SINCE VERSION: a second after line SINCE of run NAME's
# timeline in which only VERSION answered. (A timeline line has ten
# columns, then one "version=count" per version.)
only_version() {
	awk -v since="$2" -v want="$3=" 'NR > since && $1 ~ /^[0-9.]+s$/ && NF == 11 && index($11, want) == 1 {found = 1} END {exit !found}' "$E/load-$1.log"
}

# only_version_all NAME SINCE VERSION: only_version in every run of NAME.
only_version_all() {
	local name=$1 since=$2 version=$3 mode i=0
	for mode in $LOAD_MODES; do
		i=$((i + 1))
		only_version "$name-$mode" "$(cut -d' ' -f$i <<<"$since")" "$version" || return 1
	done
}

# switch_service NAME FILE VERSION applies the Service FILE and waits until
# only VERSION answers through the frontend, in both runs: within
# SWITCH_MAX seconds, since the edge opens a connection per request
# (nginx/frontend.conf.template) and kube-proxy moves new connections as
# soon as it has the Service's new endpoints. The time is recorded.
switch_service() {
	local name=$1 file=$2 version=$3 since="" mode t
	for mode in $LOAD_MODES; do
		since+="$(lines "$name-$mode") "
	done
	kubectl apply -f "$file"
	t=$SECONDS
	wait_until "only $version answers after $file" "$SWITCH_MAX" only_version_all "$name" "$since" "$version"
	echo "$name: $file applied, only $version answering at the edge after $((SECONDS - t))s (both runs)" | tee -a "$E/notes"
}

# share NAME SINCE VERSION prints "HITS TOTAL": the answers of VERSION and of
# every version in run NAME's timeline after line SINCE.
share() {
	awk -v since="$2" -v want="$3" 'NR > since && $1 ~ /^[0-9.]+s$/ && NF >= 11 {
		for (i = 11; i <= NF; i++) { split($i, kv, "="); total += kv[2]; if (kv[1] == want) hits += kv[2] } }
		END {printf "%d %d\n", hits, total}' "$E/load-$1.log"
}

bluegreen_canary() {
	cd "$src"
	bluegreen
	canary
}

bluegreen() {
	kubectl apply -f kubernetes/deployments/hello-blue.yaml
	kubectl rollout status deployment/hello-blue --timeout=120s
	load_start blue-green
	switch_service blue-green kubernetes/services/hello-blue.yaml 1.0.0
	kubectl apply -f kubernetes/deployments/hello-green.yaml
	kubectl rollout status deployment/hello-green --timeout=120s
	switch_service blue-green kubernetes/services/hello-green.yaml 2.0.0
	switch_service blue-green kubernetes/services/hello-blue.yaml 1.0.0
	kubectl delete -f kubernetes/deployments/hello-green.yaml # first, as the tutorial says
	kubectl apply -f kubernetes/services/hello.yaml
	load_stop blue-green 1.0.0 2.0.0
	kubectl delete -f kubernetes/deployments/hello-blue.yaml
}

# canary: one 2.0.0 pod next to the stable track answers its share of the
# pods (a quarter, next to three) of the requests through the frontend, in both runs: the edge
# opens a connection per request, and kube-proxy picks a pod for each.
# Counted once the canary is available, over CANARY_SAMPLE requests a run.
canary() {
	local since="" mode i hits total pct
	load_start canary
	kubectl apply -f kubernetes/deployments/hello-canary.yaml
	kubectl rollout status deployment/hello-canary --timeout=120s
	kubectl get pods -l app=hello -L track,version
	for mode in $LOAD_MODES; do
		since+="$(lines "canary-$mode") "
	done
	sleep $((CANARY_SAMPLE / RATE + 2))
	# Its share of the pods: 1 of 4 as the tutorial has it, unless hello's
	# HPA has scaled the stable track out for this test's own load.
	local stable want
	stable=$(kubectl get deployment hello -o 'jsonpath={.status.readyReplicas}')
	want=$((100 / (stable + 1)))
	i=0
	for mode in $LOAD_MODES; do
		i=$((i + 1))
		read -r hits total < <(share "canary-$mode" "$(cut -d' ' -f$i <<<"$since")" 2.0.0)
		((total >= CANARY_SAMPLE)) || fail "canary ($mode): $total answers counted, want at least $CANARY_SAMPLE"
		pct=$((100 * hits / total))
		echo "canary ($mode): 2.0.0 answered $hits of $total requests through the frontend, ${pct}% (1 pod of $((stable + 1)): ${want}% +- $CANARY_TOLERANCE)" | tee -a "$E/notes"
		((pct >= want - CANARY_TOLERANCE && pct <= want + CANARY_TOLERANCE)) ||
			fail "canary ($mode): share ${pct}%, want ${want}% +- $CANARY_TOLERANCE (1 pod of $((stable + 1)))"
	done
	load_stop canary 1.0.0 2.0.0
	kubectl delete -f kubernetes/deployments/hello-canary.yaml
}

# rejections prints, per pod of auth, hello and the monolith, its
# token_rejections_total summed over the reasons ("POD COUNT" lines), as
# Prometheus (step 1) has scraped it, after a scrape of every pod that
# began after the call: the policies open the ops port to Prometheus only
# (the API server's pod proxy reaches the pods of its own node alone).
rejections() {
	prom_fresh
	prom_query 'sum by (pod) (token_rejections_total{job="ud615"})' | jq -r '.[] | "\(.metric.pod) \(.value[1])"' | sort
}

# unknown_key_rejections prints the sum of token_rejections_total{reason="unknown_key"}
# over the pods, as rejections reads it.
unknown_key_rejections() {
	prom_fresh
	prom_value 'sum(token_rejections_total{job="ud615",reason="unknown_key"})'
}

# prom_fresh waits until Prometheus has scraped every pod of the app since
# now (its scrape interval is 15 s).
prom_fresh() {
	local t
	t=$(date +%s)
	sleep 1
	wait_until "Prometheus scraped every pod of the app" 45 prom_scraped_since "$t"
}

prom_scraped_since() {
	local oldest
	oldest=$(prom_value 'min(timestamp(up{job="ud615"}))')
	[[ -n $oldest ]] && ((${oldest%.*} > $1))
}

# login_token logs in through the frontend and prints the token.
login_token() {
	curl -fsS --cacert "$TLS_DIR/ca.pem" -u "$LOGIN" -X POST "$(frontend_url)/login" | jq -r .token
}

# kid_of TOKEN prints the kid of a token's header (base64url JSON).
kid_of() {
	local h=${1%%.*}
	h=$(printf '%s' "$h" | tr '_-' '/+')
	while ((${#h} % 4)); do h+='='; done
	printf '%s' "$h" | base64 -d | jq -r .kid
}

# signing_kid prints the ID of the key keys/jwt-private.pem holds.
signing_kid() {
	go run ./cmd/keys list -dir keys | awk '/accepted, signs/ {print $1}'
}

# rotation rotates the token keys A -> B with make rotate (the tutorial's
# section on keys) under load: a client logged in before the rotation
# (token of A) through add and promote, one logged in between add and
# promote (A), one logged in after promote (B) through retire. Every pod
# re-reads the mounted Secrets: no pod restarts, no failed request, no
# token rejected by any pod. Retire refuses before auth's TOKEN_TTL (1h)
# has passed since promote; the test retires with FORCE=1 after the
# clients holding tokens of A have stopped, which is what the wait
# guarantees for real clients (their tokens of A have expired). Then a
# token of A is refused (401, reason unknown_key).
rotation() {
	local kid_a kid_b token_a t before after restarts_before code unknown
	cd "$src"
	# The earlier steps' old pods gone first: the same pods before and after.
	wait_until "no pod terminating" 120 no_terminating
	kid_a=$(signing_kid)
	token_a=$(login_token)
	[[ $(kid_of "$token_a") == "$kid_a" ]] || fail "token's kid $(kid_of "$token_a"), want the signing key $kid_a"
	before=$(rejections)
	restarts_before=$(kubectl get pods -l 'app in (auth,hello,monolith)' -o 'jsonpath={range .items[*]}{.metadata.name}={.status.containerStatuses[*].restartCount} {end}')
	echo "$before" >&2

	# Two loads, one after the other: one logged in with a token of A
	# through add and promote, one logged in after promote (a token of B)
	# through retire. Not overlapping: like every step, two runs at a time;
	# with four and six at once, this 2-core host saturated and new
	# connections timed out.
	load_start rotation-before
	t=$SECONDS
	make -s rotate STEP=add
	echo "rotation: add: every pod accepts the new key after $((SECONDS - t))s" | tee -a "$E/notes"
	[[ $(kid_of "$(login_token)") == "$kid_a" ]] || fail "after add, a new token is not signed by $kid_a"
	t=$SECONDS
	make -s rotate STEP=promote
	echo "rotation: promote: auth (and the monolith) sign with the new key after $((SECONDS - t))s" | tee -a "$E/notes"
	kid_b=$(signing_kid)
	[[ $kid_b != "$kid_a" ]] || fail "promote kept the signing key $kid_a"
	[[ $(kid_of "$(login_token)") == "$kid_b" ]] || fail "after promote, a new token is not signed by $kid_b"
	code=$(curl -sS -o /dev/null -w '%{http_code}' --cacert "$TLS_DIR/ca.pem" -H "Authorization: Bearer $token_a" "$(frontend_url)/secure")
	[[ $code == 200 ]] || fail "after promote, a token of the old key: $code, want 200"
	# The clients with tokens of A stop; A is retired under the second.
	load_stop rotation-before
	load_start rotation-after

	# Retire before TOKEN_TTL has passed: refused, saying when.
	if make -s rotate STEP=retire >"$E/retire-early.log" 2>&1; then
		fail "make rotate STEP=retire ran within TOKEN_TTL of promote"
	fi
	cat "$E/retire-early.log" >&2
	grep -q 'retire after' "$E/retire-early.log" || fail "make rotate STEP=retire too early did not say when"
	t=$SECONDS
	make -s rotate STEP=retire FORCE=1
	echo "rotation: retire: every pod accepts only the new key after $((SECONDS - t))s" | tee -a "$E/notes"
	load_stop rotation-after

	after=$(rejections)
	echo "$after" >&2
	# The HPA may add or remove pods meanwhile: a new pod counts from 0 (it
	# read the keys of the moment at start); a removed one's count is
	# unseen here, but every rejected token of the loads failed them (401).
	local pod n b rejected=0 restarts
	while read -r pod n; do
		b=$(awk -v p="$pod" '$1 == p {print $2}' <<<"$before")
		rejected=$((rejected + n - ${b:-0}))
	done <<<"$after"
	restarts=$(kubectl get pods -l 'app in (auth,hello,monolith)' -o 'jsonpath={range .items[*]}{.metadata.name}={.status.containerStatuses[*].restartCount} {end}')
	for pod in $restarts; do
		b=$(tr ' ' '\n' <<<"$restarts_before" | grep "^${pod%%=*}=" || true)
		[[ -z $b || $b == "$pod" ]] || fail "pod ${pod%%=*} restarted during the rotation ($b -> $pod)"
	done
	echo "rotation: $kid_a -> $kid_b, $(wc -l <<<"$after") pods (before: $(wc -l <<<"$before")), none restarted; tokens rejected during the rotation: $rejected" | tee -a "$E/notes"
	((rejected == 0)) || fail "$rejected tokens rejected during the rotation"

	# A token of the retired key is refused now, and counted as unknown_key.
	unknown=$(unknown_key_rejections)
	code=$(curl -sS -o /dev/null -w '%{http_code}' --cacert "$TLS_DIR/ca.pem" -H "Authorization: Bearer $token_a" "$(frontend_url)/secure")
	[[ $code == 401 ]] || fail "a token of the retired key: $code, want 401"
	[[ $(unknown_key_rejections) == $((unknown + 1)) ]] || fail "the retired key's token was not counted as unknown_key"
	echo "rotation: a token of the retired key $kid_a: 401, token_rejections_total{reason=\"unknown_key\"} +1" | tee -a "$E/notes"
}

# ---- 10 autoscaling (issue 15) -------------------------------------------------

# The ramp: from RATE to RAMP_PEAK requests/s over RAMP_FOR seconds, then
# held until hello has scaled out. hello's 3 pods carry about 260 requests/s
# at the HPA's 70 % target (deployments/auth.yaml's notes), so the ramp
# passes it about halfway and settles near twice it.
readonly RAMP_PEAK=${RAMP_PEAK:-500} RAMP_FOR=60
# The scale-down window on this cluster, instead of the manifests' 300 s:
# the same rule kubernetes/check applies to them (drain + metrics lag), with
# this cluster's figures: the longest drain, the frontend's 27 s preStop
# (overlays/local: 12 s serving, 15 s unready; hello's is 10 s) +
# metrics-server's 15 s resolution + the HPA's 5 s sync period (cluster.sh)
# = 47 s, rounded up to 50 s. Patched on the cluster only; the files keep
# 300 s.
readonly TEST_SCALE_DOWN_WINDOW=50

# hpa_state prints one line: seconds since $1, and for hello, the frontend
# and auth their replicas/ready pods, with hello's CPU as its HPA sees it.
hpa_state() {
	local t0=$1
	echo "$((SECONDS - t0))s $(kubectl get deployments hello frontend auth -o 'jsonpath={range .items[*]}{.metadata.name}={.spec.replicas}/{.status.readyReplicas} {end}')hello-cpu=$(kubectl get hpa hello -o 'jsonpath={.status.currentMetrics[0].resource.current.averageUtilization}')%"
}

# replicas_of DEPLOYMENT prints its spec.replicas; ready_of its ready pods.
replicas_of() { kubectl get deployment "$1" -o 'jsonpath={.spec.replicas}'; }
ready_of() { kubectl get deployment "$1" -o 'jsonpath={.status.readyReplicas}'; }

# scaled_out MIN: hello has more than MIN replicas, all ready.
scaled_out() {
	local n
	n=$(replicas_of hello)
	((n > $1)) && [[ $(ready_of hello) == "$n" ]]
}

# scaled_in N: hello has fewer than N replicas, all ready, no app pod
# terminating.
scaled_in() {
	local n
	n=$(replicas_of hello)
	((n < $1)) && [[ $(ready_of hello) == "$n" ]] && no_terminating
}

# at_minimum: every autoscaled Deployment is at its HPA's minimum, and no
# app pod is still terminating (their drain is part of the scale-in).
at_minimum() {
	local d
	for d in hello frontend auth; do
		[[ $(replicas_of "$d") == $(kubectl get hpa "$d" -o 'jsonpath={.spec.minReplicas}') ]] || return 1
	done
	no_terminating
}

# autoscaling: the tutorial's autoscaling lesson (section 11). A steady
# load at RATE runs while a second tester ramps from RATE to RAMP_PEAK
# until hello's HPA has scaled it out and the new pods are ready; then both
# stop, and one run at half RATE goes on while the HPAs scale back in. No run
# may see a failure. Replicas are recorded every 5 s for the summary.
autoscaling() {
	local min d t0 t_out t_in rec peak_rate
	cd "$src"
	trap 'kill "${rec:-}" 2>/dev/null || true; kill_loads; kill_port_forwards' EXIT
	wait_until "kubectl top pods answers (metrics-server)" 90 kubectl top pods
	kubectl top pods
	min=$(kubectl get hpa hello -o 'jsonpath={.spec.minReplicas}')
	# The earlier steps' loads have scaled out (after the drain: hello 7,
	# the frontend 6). With this cluster's window, back at the minimum after
	# the window (50 s), two scale-in steps (the frontend's are 90 s apart),
	# the last pods' drain (27 s, then nginx's exit) and the metrics' lag:
	# about 200 s (with the manifests' 300 s window, over seven minutes).
	for d in hello frontend auth; do
		kubectl patch hpa "$d" --type merge -p "{\"spec\":{\"behavior\":{\"scaleDown\":{\"stabilizationWindowSeconds\":$TEST_SCALE_DOWN_WINDOW}}}}"
	done
	wait_until "hello, the frontend and auth at their minimum, no pod terminating" 240 at_minimum
	# One steady run beside the ramp, kept alive: with a second one making a
	# TLS handshake per request, the ramp saturated this 2-core host (1 of 4
	# ramps lost a request to a 2-s timeout, p50 935 ms for a second).
	LOAD_MODES=keepalive load_start autoscaling-steady
	t0=$SECONDS
	(while :; do hpa_state "$t0"; sleep 5; done) >"$E/hpa-timeline" 2>/dev/null &
	rec=$!
	# One run, kept alive: a new TLS handshake per request at RAMP_PEAK would
	# load this 2-core host more than hello.
	LOAD_MODES=keepalive load_start autoscaling-ramp -ramp-to "$RAMP_PEAK" -ramp-for "${RAMP_FOR}s"
	wait_until "hello scaled out beyond $min, new pods ready" 240 scaled_out "$min"
	t_out=$((SECONDS - t0))
	peak_rate=$((RATE + (RAMP_PEAK - RATE) * (t_out < RAMP_FOR ? t_out : RAMP_FOR) / RAMP_FOR))
	kubectl get hpa
	kubectl top pods -l app=hello
	LOAD_MODES=keepalive load_stop autoscaling-ramp
	LOAD_MODES=keepalive load_stop autoscaling-steady
	t_in=$SECONDS
	# Scaled in under load: fewer hello pods than the ramp made, none still
	# draining, while one run at half RATE (kept alive; the frontend still
	# opens a connection to hello per request) must see no failure. Not the
	# two steady runs: with a TLS handshake per request as well, they load
	# this 2-core host so much that the pods' CPU time per request rises and
	# the HPA rightly keeps the ramp's pods (seen: 7 for 300 s). Not one at
	# RATE either: it holds hello at 4 here, and the ramp stops as soon as
	# the first scale-out is ready, sometimes at 4 (seen: 300 s at 4).
	local peak in_rate=$((RATE / 2))
	peak=$(replicas_of hello)
	RATE=$in_rate LOAD_MODES=keepalive load_start autoscaling-in
	wait_until "hello scaled in below the ramp's $peak pods, none terminating" 300 scaled_in "$peak"
	kubectl get hpa
	t_in=$((SECONDS - t_in))
	RATE=$in_rate LOAD_MODES=keepalive load_stop autoscaling-in
	hpa_state "$t0" >>"$E/hpa-timeline"
	kill "$rec" 2>/dev/null || true
	cat "$E/hpa-timeline" >&2
	kubectl describe hpa hello | sed -n '/^Events:/,$p' >&2
	for d in hello frontend auth; do
		kubectl patch hpa "$d" --type merge -p '{"spec":{"behavior":{"scaleDown":{"stabilizationWindowSeconds":300}}}}' >/dev/null
	done
	{
		echo "autoscaling: hello $min -> $(awk '{split($2, a, "[=/]"); if (a[2] > m) m = a[2]} END {print m}' "$E/hpa-timeline") pods, ready ${t_out}s after the ramp began (then at ${peak_rate} requests/s); scaled in to $(replicas_of hello) under one run at ${in_rate}/s ${t_in}s after the ramp stopped (scale-down window ${TEST_SCALE_DOWN_WINDOW}s on this cluster)"
		echo "autoscaling: replicas (ready) over time, when they changed: $(awk '{st = $2 " " $3 " " $4; if (st != last) {printf "%s%s %s", sep, $1, $2 " " $3 " " $4; sep = "; "} last = st}' "$E/hpa-timeline" | sed 's/=/ /g')"
	} | tee -a "$E/notes"
}

available() {
	kubectl get deployment hello -o 'jsonpath={.status.availableReplicas}'
}

broken() {
	local want
	cd "$src"
	want=$(kubectl get deployment hello -o 'jsonpath={.spec.replicas}')
	load_start never-ready
	kubectl set env deployment/hello FAULT=never-ready
	# The rollout stalls: new pods (maxSurge, a quarter) that never become
	# ready, no old pod stopped. (Its progress deadline is 120 s; 30 s show the stall.)
	if kubectl rollout status deployment/hello --timeout=30s; then
		fail "the never-ready rollout completed"
	fi
	log "the rollout stalled, as it should"
	kubectl get pods -l app=hello -L version
	local unready
	unready=$(kubectl get pods -l app=hello,track=stable -o json |
		jq '[.items[] | select(.status.conditions[]? | select(.type == "Ready" and .status == "False"))] | length')
	((unready >= 1)) || fail "no unready new pod"
	[[ $(available) == "$want" ]] || fail "available replicas $(available), want $want: capacity lost"
	kubectl rollout undo deployment/hello
	kubectl rollout status deployment/hello --timeout=120s
	[[ $(available) == "$want" ]] || fail "available replicas $(available) after undo, want $want"
	load_stop never-ready 1.0.0
}

# ---- the load balancer and the nodes ------------------------------------------

# pods_per_node prints, per node, how many of the namespace's running pods
# it holds and of which app.
pods_per_node() {
	kubectl get pods -o json | jq -r '
		[.items[] | select(.status.phase == "Running" and .metadata.deletionTimestamp == null)
			| {node: .spec.nodeName, app: .metadata.labels.app}]
		| group_by(.node)[]
		| "\(.[0].node): \(length) pods (" + ([group_by(.app)[] | "\(.[0].app) \(length)"] | join(", ")) + ")"'
}

# lb_events SINCE prints the load balancer's changes of a node's health
# logged after line SINCE of its log, on one line: "TIME NODE
# healthy|unhealthy; …", or that there was none.
lb_events() {
	local events
	events=$(tail -n +"$(($1 + 1))" "$state/logs/lb-https.log" |
		jq -r 'select(.msg | startswith("node ")) | "\(.time[11:19]) \(.node) \(.msg | split(":")[0] | ltrimstr("node "))"' |
		paste -sd ';' | sed 's/;/; /g')
	echo "${events:-no node changed health}"
}

lb_lines() {
	wc -l <"$state/logs/lb-https.log"
}

# provider_timings restarts the frontend through the load balancer with a
# cloud's timings, the slowest of the course's: overlays/gke's frontend
# (serving 30 s of its preStop, then 15 s unready; minReadySeconds 10,
# grace 80 s: sized for the target pool's 8 s x 3 failures = 24 s) behind
# the double with profile gke, GKE's target pool-based load balancer. The
# course's steps run with overlays/local (serving 12 s) behind gke-rbs
# (3 s x 2): behind the target pool, whose node stays in rotation up to
# 24 s after its frontend pod began to stop, the local timings would leave
# a node in rotation for about 12 s with no frontend serving there. Two loads at once:
# kept-alive connections, and a new connection per request. The deploy of
# the gke overlay itself rolls every Deployment (its tolerations), under
# the same two loads behind gke-rbs.
provider_timings() {
	local since
	cd "$src"
	load_start gke-deploy
	make -s deploy OVERLAY=gke
	load_stop gke-deploy
	kubectl get deployment frontend -o json | jq -r '.spec as $d | $d.template.spec as $p
		| ($p.containers[0].env | map({key: .name, value: .value}) | from_entries) as $env
		| "frontend: preStop serves \($env.DRAIN_SERVE_SECONDS)s, then unready \($env.DRAIN_UNREADY_SECONDS)s; minReadySeconds \($d.minReadySeconds), grace \($p.terminationGracePeriodSeconds)s"' |
		tee -a "$E/notes"
	wait_until "no pod terminating" 120 no_terminating
	"$here/cluster.sh" lb frontend gke

	since=$(lb_lines)
	load_start gke-restart
	local t=$SECONDS
	echo "gke: kubectl rollout restart deployment/frontend at $(date -u +%T)" | tee -a "$E/notes"
	kubectl rollout restart deployment/frontend
	kubectl rollout status deployment/frontend --timeout=180s
	wait_until "the old frontend pods gone" 120 no_terminating
	echo "gke: frontend restarted in $((SECONDS - t))s (until the last old pod ended) behind profile gke" | tee -a "$E/notes"
	# Whether a node lost its last ready frontend pod on the way, and so
	# the load balancer steered away from it, is the scheduler's choice of
	# node for each new pod: said, not required (step 10 forces it).
	echo "gke: the load balancer saw: $(lb_events "$since")" | tee -a "$E/notes"
	load_stop gke-restart
}

# node_drain drains, under load through the load balancer, the node that
# holds the most of the app's pods, then uncordons it. The PodDisruptionBudgets
# (maxUnavailable 1) hold back the eviction of a second pod of one
# Deployment until its replacement is ready on the other node: kubectl drain
# says so and retries. Still behind profile gke, with the gke overlay's
# frontend.
node_drain() {
	local node line since t
	cd "$src"
	# kubectl drain refuses pods no controller would recreate: the lessons'
	# bare pods go first.
	kubectl get pods -o json | jq -r '.items[] | select(.metadata.ownerReferences == null) | .metadata.name' |
		xargs -r kubectl delete pod --wait=false
	wait_until "no pod terminating" 120 no_terminating
	echo "drain: pods per node before:" | tee -a "$E/notes"
	pods_per_node | sed 's/^/    /' | tee -a "$E/notes"
	node=$(kubectl get pods -o json | jq -r '[.items[] | select(.status.phase == "Running") | .spec.nodeName] | group_by(.) | max_by(length) | .[0]')
	[[ -n $node && $node != null ]] || fail "no node holds a running pod"
	local frontends
	frontends=$(kubectl get pods -l app=frontend --field-selector "spec.nodeName=$node,status.phase=Running" -o name | wc -l)
	# The PDB holds only if one Deployment has two pods there.
	kubectl get pods --field-selector "spec.nodeName=$node" -o json |
		jq -e '[.items[].metadata.ownerReferences[0].name] | group_by(.) | any(length >= 2)' >/dev/null ||
		fail "$node holds no two pods of one Deployment: no disruption budget can hold back its drain"

	since=$(lb_lines)
	load_start drain
	t=$SECONDS
	echo "drain: kubectl drain $node started at $(date -u +%T)" | tee -a "$E/notes"
	kubectl drain "$node" --ignore-daemonsets --delete-emptydir-data --timeout=240s 2>&1 | tee "$E/drain.log"
	echo "drain: kubectl drain $node took $((SECONDS - t))s" | tee -a "$E/notes"
	line=$(grep -m 1 'disruption budget' "$E/drain.log") ||
		fail "kubectl drain never said an eviction would violate a disruption budget"
	echo "drain: the PDB held back an eviction: $line" | tee -a "$E/notes"
	[[ -z $(kubectl get pods --field-selector "spec.nodeName=$node" -o name) ]] || fail "pods left on $node after the drain"
	kubectl wait deployments --all --for=condition=Available --timeout=120s
	echo "drain: pods per node after the drain:" | tee -a "$E/notes"
	pods_per_node | sed 's/^/    /' | tee -a "$E/notes"
	kubectl uncordon "$node"
	echo "drain: the load balancer saw: $(lb_events "$since")" | tee -a "$E/notes"
	# A node without a frontend pod was out of rotation before.
	if ((frontends > 0)); then
		lb_events "$since" | grep -q " $(kubectl get node "$node" -o 'jsonpath={.status.addresses[?(@.type=="InternalIP")].address}'):[0-9]* unhealthy" ||
			fail "the load balancer never took $node (with $frontends frontend pods) out of rotation"
	fi
	load_stop drain
	echo "drain: pods per node after uncordon (pods move back only when replaced):" | tee -a "$E/notes"
	pods_per_node | sed 's/^/    /' | tee -a "$E/notes"
}

# ---- monitoring (issue 14) ----------------------------------------------------
# A real Prometheus (built from monitoring/check's module by build.sh, image
# on scratch) in namespace monitoring scrapes the app's pods through the
# NetworkPolicy ops-from-monitoring and evaluates monitoring/rules.yaml:
#   1 prometheus    deployed after step 1; every auth and hello pod scraped
#   5 bad release   nothing fired or pended through steps 2-5 (the rolling
#                   update included); hello with FAULT=error-rate=0.2 fires
#                   AvailabilityBudgetBurn (1h/5m) within the time the rule
#                   promises; rollout undo
#   8 resolved      after steps 6-8 (which overlap the wait): the alert
#                   resolved within 5 m + an evaluation after the undo
# kube-state-metrics does not run here: its two alerts stay silent.

readonly PROM_API=/api/v1/namespaces/monitoring/services/prometheus:web/proxy/api/v1
# What the 1h/5m availability alert promises at 20 % errors (rules.yaml's
# header): 1 h x 14.4 x 0.1 % / 20 % = 259 s, + for: 60 s, + an evaluation
# (30 s) and a scrape (15 s) = 364 s from the first errors. It resolves once
# the last error leaves the 5 m window: 300 s + 30 s + 15 s = 345 s.
readonly FIRE_WITHIN=364 RESOLVE_WITHIN=345

# prom_query QUERY prints the result of an instant query (a JSON array).
prom_query() {
	kubectl get --raw "$PROM_API/query?query=$(jq -rn --arg q "$1" '$q | @uri')" | jq -c .data.result
}

# prom_value QUERY prints the first value of a query's result, or nothing.
prom_value() {
	prom_query "$1" | jq -r '.[0].value[1] // empty'
}

# scraped_all: Prometheus reads /metrics of every running auth and hello pod.
scraped_all() {
	local want got
	want=$(kubectl get pods -l 'app in (auth,hello)' --field-selector=status.phase=Running -o name | wc -l)
	got=$(prom_value "sum(up{job=\"ud615\", namespace=\"$NS\"})")
	((want > 0)) && [[ ${got:-0} == "$want" ]]
}

# burn_firing / burn_resolved: AvailabilityBudgetBurn's 1h/5m rule fires
# for hello / does not (each false when Prometheus does not answer).
readonly BURN_1H="ALERTS{alertname=\"AvailabilityBudgetBurn\", alertstate=\"firing\", long_window=\"1h\", namespace=\"$NS\", service=\"hello\"}"
burn_firing() {
	[[ $(prom_query "$BURN_1H" | jq length) == 1 ]]
}
burn_resolved() {
	[[ $(prom_query "$BURN_1H" | jq length) == 0 ]]
}

prometheus_up() {
	local version image
	cd "$src"
	"$here/build.sh" prometheus
	version=$("$here/build.sh" prometheus-release)
	image=docker.io/prom/prometheus:v$version
	mkdir -p "$E/prometheus-image"
	cp "$here/images/prometheus/Dockerfile" "$("$here/build.sh" prometheus-bin)" "$E/prometheus-image/"
	podman build --quiet --layers=false --platform linux/amd64 -t "$image" "$E/prometheus-image" >/dev/null
	"$here/cluster.sh" push "$image"
	sed -e "s|\${APP_NAMESPACE}|$NS|g" -e "s|\${PROMETHEUS_IMAGE}|$image|g" "$here/manifests/prometheus.yaml" | kubectl apply -f -
	# The rules as they are in the repository: the file promtool tested.
	kubectl -n monitoring create configmap prometheus-rules --from-file=rules.yaml=monitoring/rules.yaml
	kubectl -n monitoring rollout status deployment/prometheus --timeout=120s
	date +%s >"$E/prometheus-started"
	wait_until "Prometheus scrapes every auth and hello pod (up == 1)" 90 scraped_all
	local groups
	groups=$(kubectl get --raw "$PROM_API/rules" | jq '.data.groups | length')
	((groups == $(grep -c '^  - name:' monitoring/rules.yaml))) || fail "Prometheus loaded $groups rule groups"
	echo "monitoring: Prometheus $version scrapes $(prom_value "count(up{job=\"ud615\"} == 1)") pods; $groups rule groups loaded" | tee -a "$E/notes"

	# Only Prometheus' pods may reach the ops port: a pod of monitoring
	# without Prometheus' label is refused there (the policies are enforced
	# from cluster.sh up on; step "2 network policies" shows the agent's
	# part), while the same pod reaches Prometheus, which no policy selects.
	local ip prom_ip results
	ip=$(ready_pod_ip app=hello)
	prom_ip=$(kubectl -n monitoring get pods -l app.kubernetes.io/name=prometheus -o 'jsonpath={.items[0].status.podIP}')
	probe_pod np-monitoring monitoring '{}' 'sleep 600' | kubectl apply -f -
	kubectl -n monitoring wait pod np-monitoring --for=condition=Ready --timeout=60s
	results=$(reach monitoring/np-monitoring prometheus="http://$prom_ip:9090/-/ready")
	expect_reach open "$results"
	results=$(reach monitoring/np-monitoring hello-ops="http://$ip:8081/metrics")
	expect_reach dropped "$results"
	kubectl -n monitoring delete pod np-monitoring --wait=false
	echo "monitoring: ops port refused to an unlabelled pod of monitoring, served to Prometheus" | tee -a "$E/notes"
}

bad_release() {
	local since seen t0 t_fire
	cd "$src"
	# Nothing fired, nor was pending, since Prometheus started.
	since=$(($(date +%s) - $(cat "$E/prometheus-started") + 30))
	seen=$(prom_query "last_over_time(ALERTS[${since}s])")
	[[ $seen == "[]" ]] || fail "alerts during the healthy steps (rolling update included): $seen"
	# ... and Prometheus saw the rolling update: hello's /secure under load,
	# answered by both versions.
	local requests versions
	requests=$(prom_value "sum(increase(http_requests_total{namespace=\"$NS\", service=\"hello\", route=\"/secure\"}[${since}s]))")
	versions=$(prom_value "count(count by (version) (last_over_time(app_build_info{namespace=\"$NS\", service=\"hello\"}[${since}s])))")
	((${requests%.*} >= 1000)) && [[ $versions == 2 ]] ||
		fail "Prometheus saw ${requests:-no} /secure requests to hello and ${versions:-no} versions since it started: the silence proves nothing"
	echo "monitoring: no alert fired or pended in the ${since}s since Prometheus started, through ${requests%.*} /secure requests to hello and its rolling update 1.0.0 -> 2.0.0 -> 1.0.0" | tee -a "$E/notes"

	# A release failing 20 % of its requests, under load (failures expected).
	ROLLOUT_LOGIN=$LOGIN timeout -s INT 900 "$E/rollout" -url "$(frontend_url)/secure" -cacert "$TLS_DIR/ca.pem" \
		-rate "$RATE" -duration 0 >"$E/load-bad-release.log" 2>&1 &
	echo $! >"$E/load-bad-release.pid"
	sleep 5
	# Not waiting for the rollout: the first bad pod's errors are enough
	# (one pod of three at 20 % is 6.7 % of hello's requests), and undo
	# stops a rollout halfway as well.
	t0=$SECONDS
	kubectl set env deployment/hello FAULT=error-rate=0.2
	wait_until "AvailabilityBudgetBurn (1h/5m) fires for hello" "$FIRE_WITHIN" burn_firing
	t_fire=$((SECONDS - t0))
	kubectl get pods -l app=hello -o wide
	kill_loads
	sed -n 's/^summary: */bad release load: /p' "$E/load-bad-release.log" >&2 || true
	kubectl rollout undo deployment/hello
	kubectl rollout status deployment/hello --timeout=180s
	date +%s >"$E/undone-at"
	echo "monitoring: FAULT=error-rate=0.2 rolling out: AvailabilityBudgetBurn (1h/5m) fired ${t_fire}s after kubectl set env (promised within ${FIRE_WITHIN}s of the first errors)" | tee -a "$E/notes"
}

alert_resolved() {
	local undone t_resolved last
	undone=$(cat "$E/undone-at")
	wait_until "AvailabilityBudgetBurn (1h/5m) resolved" $((RESOLVE_WITHIN + 30 - ($(date +%s) - undone))) burn_resolved
	# When it stopped firing: its last firing sample, plus an evaluation.
	last=$(prom_value "max_over_time(timestamp($BURN_1H)[30m:10s])")
	t_resolved=$(( ${last%.*} + 30 - undone ))
	((t_resolved <= RESOLVE_WITHIN)) || fail "resolved ${t_resolved}s after the undo, promised within ${RESOLVE_WITHIN}s"
	echo "monitoring: AvailabilityBudgetBurn (1h/5m) resolved ${t_resolved}s after rollout undo completed (promised within ${RESOLVE_WITHIN}s)" | tee -a "$E/notes"
}
# ---- end monitoring -------------------------------------------------------------

cluster_down() {
	# Every test connection went through the load balancer double: how many
	# of its connections to the nodes had to resend their SYN (each a 1 s
	# stall; a packet lost on the way, e.g. by the NetworkPolicy agent).
	if [[ -e $state/ns/lb.net ]]; then
		nsenter --net="$state/ns/lb.net" nstat -az TcpActiveOpens TcpExtTCPSynRetrans 2>/dev/null |
			awk '$1 == "TcpActiveOpens" {o = $2} $1 == "TcpExtTCPSynRetrans" {r = $2}
				END {if (o) printf "load balancer: %d of %d connections to the nodes resent their SYN\n", r, o}' | tee -a "$E/notes"
	fi
	"$here/cluster.sh" down
	"$here/cluster.sh" down # safe twice
	host_state >"$E/host-after"
	if ! diff -u "$E/host-before" "$E/host-after" >&2; then
		fail "the host is not as before (- before, + after)"
	fi
	log "host as before: $(wc -l <"$E/host-before") facts compared"
}

# ---- failure report and summary ---------------------------------------------

diagnose() {
	log "diagnostics"
	[[ -f $KUBECONFIG ]] || return 0
	kubectl get nodes,pods,services,endpointslices -A -o wide >&2 || true
	kubectl get events -A --sort-by=.lastTimestamp 2>/dev/null | tail -n 40 >&2 || true
	local pod
	for pod in $(kubectl get pods -o 'jsonpath={range .items[*]}{.metadata.name}{"\n"}{end}' 2>/dev/null); do
		if ! kubectl get pod "$pod" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' | grep -q True; then
			kubectl describe pod "$pod" | tail -n 25 >&2 || true
			kubectl logs "$pod" --all-containers --tail=20 >&2 || true
		fi
	done
	local f
	for f in "$state"/logs/*.log; do
		[[ -f $f ]] || continue
		echo "---- $f (last 15 lines)" >&2
		tail -n 15 "$f" >&2
	done
}

summary() {
	echo
	echo "==== summary (test/cluster/e2e.sh)"
	printf '%-5s %-22s %s\n' result step time
	local r n t
	while IFS='|' read -r r n t; do
		printf '%-5s %-22s %s\n' "$r" "$n" "$t"
	done <"$E/steps"
	if [[ -s $E/loads ]]; then
		echo
		echo "load (cmd/rollout through the frontend, GET /secure logged in, $RATE requests/s a run; connections"
		echo "kept alive, or new for every request; logins: POST /login again every $LOGIN_EVERY requests):"
		printf '  %-22s %-9s %8s %7s %6s %6s %7s  %s\n' run mode requests rate/s failed conns logins versions
		local name mode s v requests rate nfailed conns logins
		while IFS='|' read -r name mode s v; do
			read -r requests rate nfailed conns logins < <(sed -E -n \
				's/^([0-9]+) requests in [^(]*\(([0-9.]+)\/s achieved\), ([0-9]+) failed; connections: [^,]*, ([0-9]+) opened(; logins: ([0-9]+).*)?$/\1 \2 \3 \4 \6/p' <<<"$s")
			printf '  %-22s %-9s %8s %7s %6s %6s %7s  %s\n' "$name" "$mode" "${requests:-?}" "${rate:-?}" "${nfailed:-?}" "${conns:-?}" "${logins:--}" "$v"
		done <"$E/loads"
	fi
	[[ -s $E/notes ]] && sed 's/^/  /' "$E/notes"
	echo
	echo "total: $((SECONDS - t_start))s"
	echo "cluster: $passed passed, $failed failed"
}

main() {
	trap 'log "interrupted: taking the cluster down"; kill_port_forwards; "$here/cluster.sh" down; rm -rf "$E"; exit 130' INT TERM
	if "$here/cluster.sh" status 2>/dev/null | grep -q ': running'; then
		log "a cluster is up already (make cluster-down first): not touching it"
		return 1
	fi
	rm -rf "$E"
	mkdir -p "$E"
	: >"$E/steps"
	host_state >"$E/host-before"
	step "0 cluster up" cluster_up
	step "0 images" images
	step "1 deploy" deploy
	step "1 prometheus" prometheus_up # monitoring (issue 14)
	step "2 frontend" frontend
	# After 2: its login goes through the load balancer's address, which
	# step 2's certificate names.
	step "2 network policies" network_policies
	step "3 pods" pods
	step "4 probes" probes
	step "5 rolling update" rolling
	step "5 bad release" bad_release # monitoring (issue 14)
	step "6 blue-green, canary" bluegreen_canary
	step "7 never-ready" broken
	step "8 key rotation" rotation
	step "8 alert resolved" alert_resolved # monitoring (issue 14)
	step "9 GKE timings via LB" provider_timings
	step "10 node drain" node_drain
	step "11 autoscaling" autoscaling
	kill_port_forwards
	if ((failed > 0)); then
		diagnose
	fi
	if [[ ${KEEP_CLUSTER:-} == 1 ]]; then
		log "KEEP_CLUSTER=1: the cluster stays up; test/cluster/cluster.sh down removes it"
	else
		failed_before=$failed
		failed=0 # down runs whatever happened before
		step "12 down" cluster_down
		failed=$((failed + failed_before))
	fi
	summary
	if [[ ${KEEP_CLUSTER:-} == 1 ]]; then
		log "KEEP_CLUSTER=1: the loads' logs and the learner's clone stay in $E"
	else
		rm -rf "$E"
	fi
	((failed == 0))
}

main
