#!/usr/bin/env bash
# e2e.sh is `make test-cluster`: the course, end to end, on a real
# single-node Kubernetes (cluster.sh), through the commands the tutorial
# (docs/tutorial.md) gives users, with the rollout load tester (cmd/rollout)
# sending logged-in requests to /secure through the frontend during every
# change. Then it takes the cluster down and checks that the host is as before.
#
#   1 deploy      in a copy of the repository, as a learner's clone: make images,
#                 make set-registry, make certs, make secrets, make deploy
#                 OVERLAY=local: every Deployment rolls out, every pod Ready;
#                 make deploy with an image that does not exist says
#                 ImagePullBackOff and the image within its first 30 s report
#   2 frontend    through the frontend Service over TLS: login, token, /secure;
#                 a new certificate (make certs, make deploy) rolls the frontend
#   3 pods        the monolith pod via kubectl port-forward, and the tutorial's
#                 kubectl debug recipe under the restricted profile; the
#                 secure-monolith's nginx sidecar, and the NodePort Service once
#                 it is labelled
#   4 probes      readiness off takes a hello pod out of the Service's endpoints;
#                 liveness off makes the kubelet restart the container
#   5 rolling     hello, then auth 1.0.0 -> 2.0.0 under load (the tutorial's
#                 patches), then rollout undo: no failed request, both versions seen
#   6 blue-green  the Service switched blue -> green -> blue under load: no failed
#   + canary      request; a canary next to the stable track answers about its
#                 replica share (1 in 4) of new connections to the Service
#   7 broken      a never-ready release stalls without losing capacity; undo recovers
#   8 rotation    the token keys rotated (make rotate STEP=add, promote, retire)
#                 under load by clients logged in before, during and after it:
#                 no failed request, no token rejected by any pod (their
#                 /metrics), no restart; then the old key's token gets 401
#   9 down        cluster down; no process, mount, link, rule or directory left
#  10-12          monitoring: see the block "monitoring (issue 14)" below
#
# Every kubectl and make command runs in a copy of the repository
# ($CLUSTER_E2E_DIR/src: the tracked and untracked files, not tls/ or bin/),
# since make set-registry rewrites kubernetes/. The commands are the
# tutorial's for GKE and EKS, with OVERLAY=local.
#
# The frontend is reached as https://127.0.0.1:<nodePort>: kube-proxy serves
# NodePorts on the loopback address only (cluster.sh); the canary's share is
# sampled at the hello Service's cluster address. All test traffic stays on
# this machine. Settings: RATE (50 requests/s), STEPS (only those steps), CLUSTER_E2E_DIR
# (/var/tmp/app-cluster-e2e, removed at the end), KEEP_CLUSTER=1 leaves the
# cluster up for a look (cluster.sh down removes it).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
root=$(cd "$here/../.." && pwd -P)
cd "$root"

E=${CLUSTER_E2E_DIR:-/var/tmp/app-cluster-e2e}
RATE=${RATE:-50}
readonly NS=ud615 LOGIN=user:password
readonly CANARY_MIN=10 CANARY_MAX=45 # percent of answers from the 1-in-4 canary
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
# only those (with 0 and 9, which always run): a quicker look at one lesson
# while working on it, never what CI runs.
step() {
	local name=$1 fn=$2 t=$SECONDS rc
	if [[ -n ${STEPS:-} && ${name%% *} != [09] && " $STEPS " != *" ${name%% *} "* ]]; then
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

# load_start NAME starts the rollout tester in the background: logged in,
# GET /secure through the frontend at RATE requests/s until load_stop.
load_start() {
	local name=$1
	# timeout bounds it should load_stop never come; it passes SIGINT on.
	# The login from the environment: an argument shows in the process list.
	ROLLOUT_LOGIN=$LOGIN timeout -s INT 900 "$E/rollout" -url "$(frontend_url)/secure" -cacert "$TLS_DIR/ca.pem" \
		-rate "$RATE" -duration 0 >"$E/load-$name.log" 2>&1 &
	echo $! >"$E/load-$name.pid"
	# Steady state first: the timeline shows the change against it.
	sleep 5
	grep -q '^attacking' "$E/load-$name.log" || {
		cat "$E/load-$name.log" >&2
		fail "the load tester did not start"
	}
}

# load_stop NAME [VERSION…] stops the tester after a few more seconds,
# prints its per-second timeline and summary, records the counts, and fails
# if a request failed or one of VERSIONs never answered.
load_stop() {
	local name=$1 pid rc=0 summary versions v
	shift
	sleep 5
	pid=$(cat "$E/load-$name.pid")
	rm -f "$E/load-$name.pid"
	kill -INT "$pid" 2>/dev/null || true
	wait "$pid" || rc=$?
	echo "---- load tester: $name" >&2
	cat "$E/load-$name.log" >&2
	summary=$(sed -n 's/^summary: *//p' "$E/load-$name.log")
	versions=$(sed -n 's/^versions: *//p' "$E/load-$name.log")
	echo "$name|$summary|$versions" >>"$E/loads"
	[[ -n $summary ]] || fail "$name: the load tester printed no summary"
	((rc == 0)) || fail "$name: requests failed (load tester exit $rc)"
	for v in "$@"; do
		[[ " $versions" == *" $v="* ]] || fail "$name: version $v never answered ($versions)"
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

frontend_url() {
	local port
	port=$(kubectl get service frontend -o 'jsonpath={.spec.ports[?(@.name=="https")].nodePort}')
	echo "https://127.0.0.1:$port"
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
	ip -o link show | awk -F': ' '$2 ~ /^(appnode0|appcni0)/ {print "link " $2}'
	awk -v re="^($state|/run/containerd|/var/lib/kubelet)(/|\$)" '$2 ~ re {print "mount " $2}' /proc/mounts
	for s in "$state" /run/containerd /var/lib/kubelet /var/log/containers /var/lib/cni /sys/fs/cgroup/memory/kubepods /sys/fs/cgroup/cpu/kubepods; do
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
}

frontend() {
	local url token code
	cd "$src"
	url=$(frontend_url)
	curl -fsS --cacert "$TLS_DIR/ca.pem" "$url/" >/dev/null
	code=$(curl -sS -o /dev/null -w '%{http_code}' --cacert "$TLS_DIR/ca.pem" "$url/secure")
	[[ $code == 401 ]] || fail "GET /secure without a token: $code, want 401"
	token=$(curl -fsS --cacert "$TLS_DIR/ca.pem" -u "$LOGIN" -X POST "$url/login" | jq -r .token)
	[[ -n $token && $token != null ]] || fail "no token from /login"
	curl -fsS --cacert "$TLS_DIR/ca.pem" -H "Authorization: Bearer $token" "$url/secure"
	echo
	# Plain HTTP answers with a redirect to HTTPS.
	local http_port
	http_port=$(kubectl get service frontend -o 'jsonpath={.spec.ports[?(@.name=="http")].nodePort}')
	code=$(curl -sS -o /dev/null -w '%{http_code}' "http://127.0.0.1:$http_port/")
	[[ $code == 308 ]] || fail "GET http:// : $code, want 308"

	# A new certificate, as the tutorial makes one for the load balancer's
	# address: make deploy rolls the frontend by itself, and only it.
	local secret hello_rs
	secret=$(kubectl get deployment frontend -o 'jsonpath={.spec.template.spec.volumes[?(@.name=="tls")].secret.secretName}')
	hello_rs=$(kubectl get deployment hello -o 'jsonpath={.metadata.generation}')
	make -s certs FORCE=1 HOSTS=127.0.0.1
	make -s deploy OVERLAY=local
	[[ $(kubectl get deployment frontend -o 'jsonpath={.spec.template.spec.volumes[?(@.name=="tls")].secret.secretName}') != "$secret" ]] ||
		fail "a new certificate kept the frontend's Secret $secret"
	[[ $(kubectl get deployment hello -o 'jsonpath={.metadata.generation}') == "$hello_rs" ]] ||
		fail "a new certificate changed deployment hello"
	curl -fsS --cacert "$TLS_DIR/ca.pem" "$url/" >/dev/null
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

rolling() {
	cd "$src"
	load_start rolling-update
	kubectl patch deployment hello --patch-file kubernetes/patches/hello-2.0.0.yaml
	kubectl rollout status deployment/hello --timeout=180s
	load_stop rolling-update 1.0.0 2.0.0
	kubectl get replicasets -l app=hello -L version
	kubectl rollout history deployment/hello

	# auth's patch: image and version labels, under the same logged-in load.
	load_start auth-update
	kubectl patch deployment auth --patch-file kubernetes/patches/auth-2.0.0.yaml
	kubectl rollout status deployment/auth --timeout=180s
	load_stop auth-update
	kubectl get pods -l app=auth -L version
	[[ $(kubectl get replicasets -l app=auth,version=2.0.0 -o 'jsonpath={.items[*].status.readyReplicas}') == 2 ]] ||
		fail "no ReplicaSet of auth with 2 ready pods labelled version=2.0.0"
	kubectl rollout undo deployment/auth
	kubectl rollout status deployment/auth --timeout=180s

	load_start rollout-undo
	kubectl rollout undo deployment/hello
	kubectl rollout status deployment/hello --timeout=180s
	load_stop rollout-undo 2.0.0 1.0.0
}

# version_share VERSION N: the percentage of N fresh connections to the
# hello Service's cluster address that VERSION answers (kube-proxy picks an
# endpoint per connection; nginx's kept-alive upstream connections would not).
version_share() {
	local want=$1 n=$2 ip hits=0 i
	ip=$(kubectl get service hello -o 'jsonpath={.spec.clusterIP}')
	for ((i = 0; i < n; i++)); do
		if [[ $(curl -fsS --max-time 2 "http://$ip/version" | jq -r .version) == "$want" ]]; then
			hits=$((hits + 1))
		fi
	done
	echo $((100 * hits / n))
}

# lines NAME: how many lines the tester has printed so far.
lines() {
	wc -l <"$E/load-$1.log"
}

# only_version NAME SINCE VERSION: a second after line SINCE of the tester's
# timeline in which only VERSION answered. (A timeline line has ten columns,
# then one "version=count" per version.)
only_version() {
	awk -v since="$2" -v want="$3=" 'NR > since && $1 ~ /^[0-9.]+s$/ && NF == 11 && index($11, want) == 1 {found = 1} END {exit !found}' "$E/load-$1.log"
}

# switch_service NAME FILE VERSION applies the Service FILE and waits until
# only VERSION answers through the frontend. nginx keeps its upstream
# connections alive, and kube-proxy moves only new connections, so the old
# track keeps some traffic until nginx renews those (after 1000 requests or
# 60 s idle): the time is recorded.
switch_service() {
	local name=$1 file=$2 version=$3 since t=$SECONDS
	since=$(lines "$name")
	kubectl apply -f "$file"
	wait_until "only $version answers after $file" 120 only_version "$name" "$since" "$version"
	echo "$name: $file applied, only $version answering after $((SECONDS - t))s" | tee -a "$E/notes"
}

bluegreen_canary() {
	cd "$src"
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

	# The share is measured with fresh connections to the Service: through
	# the frontend, nginx sends everything over one kept-alive upstream
	# connection at a time (renewed every 1000 requests), so there the canary
	# answers in 20 s bursts, or not at all for a while. The load through
	# the frontend must still see no failure.
	load_start canary
	kubectl apply -f kubernetes/deployments/hello-canary.yaml
	kubectl rollout status deployment/hello-canary --timeout=120s
	kubectl get pods -l app=hello -L track,version
	local share
	share=$(version_share 2.0.0 200)
	echo "canary: 2.0.0 answered ${share}% of 200 fresh connections to the hello Service (1 pod of 4: about 25%)" | tee -a "$E/notes"
	load_stop canary 1.0.0
	((share >= CANARY_MIN && share <= CANARY_MAX)) || fail "canary share ${share}%, want ${CANARY_MIN}-${CANARY_MAX}%"
	kubectl delete -f kubernetes/deployments/hello-canary.yaml
}

# rejections prints, per pod of auth, hello and the monolith, its
# token_rejections_total summed over the reasons, read from the pod's
# /metrics through the API server's pod proxy: "POD COUNT" lines.
rejections() {
	local pod
	for pod in $(kubectl get pods -l 'app in (auth,hello,monolith)' --field-selector=status.phase=Running -o 'jsonpath={.items[*].metadata.name}'); do
		echo "$pod $(kubectl get --raw "/api/v1/namespaces/$NS/pods/$pod:8081/proxy/metrics" |
			awk '/^token_rejections_total[{ ]/ {n += $NF} END {printf "%d", n}')"
	done
}

# unknown_key_rejections prints the sum of token_rejections_total{reason="unknown_key",…}
# (the services add a service label).
unknown_key_rejections() {
	local pod n=0
	for pod in $(kubectl get pods -l 'app in (auth,hello,monolith)' --field-selector=status.phase=Running -o 'jsonpath={.items[*].metadata.name}'); do
		n=$((n + $(kubectl get --raw "/api/v1/namespaces/$NS/pods/$pod:8081/proxy/metrics" |
			awk '/^token_rejections_total\{/ && /reason="unknown_key"/ {n += $NF} END {printf "%d", n}')))
	done
	echo $n
}

no_pod_terminating() {
	[[ $(kubectl get pods -o json | jq '[.items[] | select(.metadata.deletionTimestamp)] | length') == 0 ]]
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
	wait_until "no pod terminating" 120 no_pod_terminating
	kid_a=$(signing_kid)
	token_a=$(login_token)
	[[ $(kid_of "$token_a") == "$kid_a" ]] || fail "token's kid $(kid_of "$token_a"), want the signing key $kid_a"
	before=$(rejections)
	restarts_before=$(kubectl get pods -l 'app in (auth,hello,monolith)' -o 'jsonpath={range .items[*]}{.metadata.name}={.status.containerStatuses[*].restartCount} {end}')
	echo "$before" >&2

	load_start rotation-before
	t=$SECONDS
	make -s rotate STEP=add
	echo "rotation: add: every pod accepts the new key after $((SECONDS - t))s" | tee -a "$E/notes"
	[[ $(kid_of "$(login_token)") == "$kid_a" ]] || fail "after add, a new token is not signed by $kid_a"
	load_start rotation-during
	t=$SECONDS
	make -s rotate STEP=promote
	echo "rotation: promote: auth (and the monolith) sign with the new key after $((SECONDS - t))s" | tee -a "$E/notes"
	kid_b=$(signing_kid)
	[[ $kid_b != "$kid_a" ]] || fail "promote kept the signing key $kid_a"
	[[ $(kid_of "$(login_token)") == "$kid_b" ]] || fail "after promote, a new token is not signed by $kid_b"
	code=$(curl -sS -o /dev/null -w '%{http_code}' --cacert "$TLS_DIR/ca.pem" -H "Authorization: Bearer $token_a" "$(frontend_url)/secure")
	[[ $code == 200 ]] || fail "after promote, a token of the old key: $code, want 200"
	load_start rotation-after

	# Retire before TOKEN_TTL has passed: refused, saying when.
	if make -s rotate STEP=retire >"$E/retire-early.log" 2>&1; then
		fail "make rotate STEP=retire ran within TOKEN_TTL of promote"
	fi
	cat "$E/retire-early.log" >&2
	grep -q 'retire after' "$E/retire-early.log" || fail "make rotate STEP=retire too early did not say when"
	# The clients with tokens of A stop, then A is retired under the third.
	load_stop rotation-before
	load_stop rotation-during
	t=$SECONDS
	make -s rotate STEP=retire FORCE=1
	echo "rotation: retire: every pod accepts only the new key after $((SECONDS - t))s" | tee -a "$E/notes"
	load_stop rotation-after

	after=$(rejections)
	echo "$after" >&2
	local pod n b rejected=0
	while read -r pod n; do
		b=$(awk -v p="$pod" '$1 == p {print $2}' <<<"$before")
		[[ -n $b ]] || fail "pod $pod appeared during the rotation"
		rejected=$((rejected + n - b))
	done <<<"$after"
	[[ $(kubectl get pods -l 'app in (auth,hello,monolith)' -o 'jsonpath={range .items[*]}{.metadata.name}={.status.containerStatuses[*].restartCount} {end}') == "$restarts_before" ]] ||
		fail "pods restarted or changed during the rotation"
	echo "rotation: $kid_a -> $kid_b, $(wc -l <<<"$after") pods, none restarted; tokens rejected during the rotation: $rejected" | tee -a "$E/notes"
	((rejected == 0)) || fail "$rejected tokens rejected during the rotation"

	# A token of the retired key is refused now, and counted as unknown_key.
	unknown=$(unknown_key_rejections)
	code=$(curl -sS -o /dev/null -w '%{http_code}' --cacert "$TLS_DIR/ca.pem" -H "Authorization: Bearer $token_a" "$(frontend_url)/secure")
	[[ $code == 401 ]] || fail "a token of the retired key: $code, want 401"
	[[ $(unknown_key_rejections) == $((unknown + 1)) ]] || fail "the retired key's token was not counted as unknown_key"
	echo "rotation: a token of the retired key $kid_a: 401, token_rejections_total{reason=\"unknown_key\"} +1" | tee -a "$E/notes"
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
	# The rollout stalls: one new pod that never becomes ready, no old pod
	# stopped. (Its progress deadline is 120 s; 30 s show the stall.)
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

# ---- monitoring (issue 14) ----------------------------------------------------
# A real Prometheus (built from monitoring/check's module by build.sh, image
# on scratch) in namespace monitoring scrapes the app's pods through the
# NetworkPolicy ops-from-monitoring and evaluates monitoring/rules.yaml:
#   10 prometheus   deployed after step 1; every auth and hello pod scraped
#   11 bad release  nothing fired or pended through steps 2-5 (the rolling
#                   update included); hello with FAULT=error-rate=0.2 fires
#                   AvailabilityBudgetBurn (1h/5m) within the time the rule
#                   promises; rollout undo
#   12 resolved     after steps 6-8 (which overlap the wait): the alert
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

# probe_from_monitoring NAME LABEL URL: a busybox pod in namespace
# monitoring, labelled LABEL (key=value or none), fetches URL; its exit status.
probe_from_monitoring() {
	local name=$1 label=$2 url=$3 rc
	kubectl -n monitoring apply -f - >/dev/null <<-EOF
		apiVersion: v1
		kind: Pod
		metadata:
		  name: $name
		  labels: {${label/=/: }}
		spec:
		  restartPolicy: Never
		  automountServiceAccountToken: false
		  securityContext: {runAsNonRoot: true, runAsUser: 65532, seccompProfile: {type: RuntimeDefault}}
		  containers:
		    - name: probe
		      image: docker.io/library/busybox:1.37
		      command: [wget, -q, -T, "3", -O, /dev/null, "$url"]
		      securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
	EOF
	rc=2
	for _ in $(seq 60); do
		case $(kubectl -n monitoring get pod "$name" -o 'jsonpath={.status.phase}') in
		Succeeded) rc=0 && break ;;
		Failed) rc=1 && break ;;
		esac
		sleep 0.5
	done
	((rc == 0)) || kubectl -n monitoring logs "$name" >&2 || true
	kubectl -n monitoring delete pod "$name" --wait=false >/dev/null
	((rc < 2)) || fail "probe pod $name did not finish within 30 s"
	return "$rc"
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

	# Only Prometheus' pods may reach the ops port. Where the cluster enforces
	# NetworkPolicies (the app port of hello refuses a pod that is not the
	# frontend's), a pod in monitoring without Prometheus' label must be
	# refused on the ops port as well.
	local ip prom_ip
	ip=$(kubectl get pods -l app=hello -o 'jsonpath={.items[0].status.podIP}')
	prom_ip=$(kubectl -n monitoring get pods -l app.kubernetes.io/name=prometheus -o 'jsonpath={.items[0].status.podIP}')
	# The probe itself must work first: no policy selects Prometheus' pod.
	if ! probe_from_monitoring netpol-works none=none "http://$prom_ip:9090/-/ready"; then
		echo "monitoring: a probe pod cannot fetch from Prometheus itself here: the refused half is not tested" | tee -a "$E/notes"
	elif probe_from_monitoring netpol-control none=none "http://$ip:8080/"; then
		echo "monitoring: NetworkPolicies not enforced on this cluster: the refused half is not tested" | tee -a "$E/notes"
	elif probe_from_monitoring netpol-ops none=none "http://$ip:8081/metrics"; then
		fail "a pod in monitoring without app.kubernetes.io/name=prometheus reached the ops port"
	else
		echo "monitoring: ops port refused to an unlabelled pod of monitoring, served to Prometheus" | tee -a "$E/notes"
	fi
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
		echo "load (cmd/rollout, GET /secure logged in, $RATE requests/s through the frontend):"
		local name s v
		while IFS='|' read -r name s v; do
			printf '  %-15s %s\n                  versions: %s\n' "$name" "$s" "$v"
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
	step "10 prometheus" prometheus_up # monitoring (issue 14)
	step "2 frontend" frontend
	step "3 pods" pods
	step "4 probes" probes
	step "5 rolling update" rolling
	step "11 bad release" bad_release # monitoring (issue 14)
	step "6 blue-green, canary" bluegreen_canary
	step "7 never-ready" broken
	step "8 key rotation" rotation
	step "12 alert resolved" alert_resolved # monitoring (issue 14)
	kill_port_forwards
	if ((failed > 0)); then
		diagnose
	fi
	if [[ ${KEEP_CLUSTER:-} == 1 ]]; then
		log "KEEP_CLUSTER=1: the cluster stays up; test/cluster/cluster.sh down removes it"
	else
		failed_before=$failed
		failed=0 # step 9 runs whatever happened before
		step "9 down" cluster_down
		failed=$((failed + failed_before))
	fi
	summary
	rm -rf "$E"
	((failed == 0))
}

main
