#!/usr/bin/env bash
# deploy.sh puts the app on the cluster of the current kubectl context. The
# Makefile calls it; it can be run by hand as well:
#
#   kubernetes/deploy.sh set-registry REGISTRY  # make set-registry: the manifests name REGISTRY
#   kubernetes/deploy.sh secrets                # make secrets: the token keys (once) and the lessons' objects
#   kubernetes/deploy.sh rotate STEP            # make rotate STEP=add|promote|retire: rotate the token keys
#   kubernetes/deploy.sh deploy OVERLAY         # make deploy: kubernetes/overlays/OVERLAY, then wait
#   kubernetes/deploy.sh undeploy OVERLAY       # make undeploy: delete what deploy made
#
# Settings, from the environment:
#   NAMESPACE        the namespace to use (default: the context's, else "default")
#   ROLLOUT_TIMEOUT  how long deploy waits for the rollouts, in seconds (300)
#   ROTATE_TIMEOUT   how long rotate waits for the pods to reload their keys (300)
#   KEYS_DIR         the token keys and users file (default: keys/ of the repository)
#   KEYS_CMD         a built cmd/keys (default: go run ./cmd/keys)
#   FORCE            rotate retire: do not wait for TOKEN_TTL after promote
#   KUBECTL          the kubectl to run (default: kubectl)
#
# Every step can run again: set-registry rewrites whatever registry the
# files name, secrets keeps an existing signing key, deploy applies.
set -euo pipefail

# The names the manifests refer to. kubernetes/check runs this script with a
# fake kubectl and checks that every Secret, ConfigMap and key a pod uses is
# made here or by a generator of kubernetes/base.
readonly TLS_SECRET=tls-certs         # keys cert.pem, key.pem; mounted at /etc/tls
readonly SIGNING_SECRET=jwt-signing-key # key jwt-private.pem: auth and the monolith only
readonly PUBLIC_SECRET=jwt-public-keys  # key jwt-public.pem: every service
readonly USERS_SECRET=users             # key users: auth with components/users-file
# The files in keys/ (KEYS_DIR) that cmd/keys writes.
readonly PRIVATE_KEY=jwt-private.pem PUBLIC_KEYS=jwt-public.pem NEXT_KEY=jwt-next.pem USERS_KEY=users
# When the current signing key began to sign, in seconds since 1970 (date
# +%s, the same on GNU and BSD): retire waits TOKEN_TTL after it.
readonly SIGNING_SINCE=ud615.example.com/signing-since
readonly PROXY_CONF=nginx-proxy-conf  # key proxy.conf.template (pods/secure-monolith.yaml)
# The images built here (the Makefile's BINARIES), under one registry; the
# committed files name a placeholder that deploy refuses.
readonly BINARIES='auth|hello|monolith'
readonly PLACEHOLDER=ghcr.io/example/app
# The generated TLS Secret's label: applied server-side, see deploy.
readonly TLS_COMPONENT=app.kubernetes.io/component=frontend-tls
# The deployments deploy waits for.
readonly DEPLOYMENTS=(auth hello frontend)
# Those a HorizontalPodAutoscaler of the same name scales (kubernetes/check
# checks the list against the render).
readonly AUTOSCALED=(auth hello frontend)

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
root=$(dirname "$here")
KUBECTL=${KUBECTL:-kubectl}
ROLLOUT_TIMEOUT=${ROLLOUT_TIMEOUT:-300}
ROTATE_TIMEOUT=${ROTATE_TIMEOUT:-300}
KEYS_DIR=${KEYS_DIR:-$root/keys}
[[ $KEYS_DIR == /* ]] || KEYS_DIR=$PWD/$KEYS_DIR
# Temporary files, removed however the script ends.
tmpfiles=()
trap 'rm -f ${tmpfiles[@]+"${tmpfiles[@]}"}' EXIT

die() {
	echo "deploy.sh: $*" >&2
	exit 1
}

say() {
	echo "deploy.sh: $*" >&2
}

# kc runs kubectl in the namespace.
kc() {
	"$KUBECTL" --namespace "$NAMESPACE" "$@"
}

set_namespace() {
	if [[ -z ${NAMESPACE:-} ]]; then
		NAMESPACE=$("$KUBECTL" config view --minify --output 'jsonpath={..namespace}' 2>/dev/null || true)
	fi
	NAMESPACE=${NAMESPACE:-default}
	say "context $("$KUBECTL" config current-context 2>/dev/null || echo '(none)'), namespace $NAMESPACE"
}

need_tls() {
	local f
	for f in "$root/tls/cert.pem" "$root/tls/key.pem"; do
		[[ -f $f ]] || die "$f is missing: run make certs first (a CA and a certificate in tls/)"
	done
}

# ---- set-registry -------------------------------------------------------

# image_files lists the manifests that name an image built here.
image_files() {
	grep -rlE --include='*.yaml' "^[[:space:]-]*image: [^[:space:]]+/($BINARIES):" "$here" | grep -v '/check/' | sort
}

# files_registry prints the registry the manifests name now: the placeholder
# as committed, or the one set-registry wrote.
files_registry() {
	sed -nE "s#^[[:space:]-]*image: ([^[:space:]]+)/($BINARIES):.*#\1#p" "$here/deployments/auth.yaml" | head -n 1
}

set_registry() {
	local new=${1:-} current f re
	if [[ -z $new || $new == "$PLACEHOLDER" ]]; then
		die "say which registry: make set-registry REGISTRY=<registry>, e.g. us-docker.pkg.dev/PROJECT/ud615 or ACCOUNT.dkr.ecr.REGION.amazonaws.com/ud615 (where make push put the images)"
	fi
	# A registry host (optionally :port) and a path, lowercase, as image
	# references allow; no scheme, no tag, no trailing slash.
	if ! [[ $new =~ ^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*$ ]]; then
		die "REGISTRY=$new is not an image registry and path like us-docker.pkg.dev/PROJECT/ud615 (lowercase, no https://, no tag, no trailing /)"
	fi
	current=$(files_registry)
	[[ -n $current ]] || die "no image in $here/deployments/auth.yaml: cannot tell which registry the files name"
	if [[ $current != "$new" ]]; then
		re=${current//./\\.}
		for f in $(image_files); do
			# -i.bak works with GNU and BSD (macOS) sed alike.
			sed -i.bak -E "s#^([[:space:]-]*image: )$re/($BINARIES):#\1$new/\2:#" "$f"
			rm -f "$f.bak"
		done
	fi
	# Every image built here must now be under the new registry.
	local stray
	stray=$(grep -rnE --include='*.yaml' "^[[:space:]-]*image: [^[:space:]]+/($BINARIES):" "$here" | grep -v '/check/' | grep -vF "image: $new/" || true)
	[[ -z $stray ]] || die "these images are not under $new (edited by hand?):"$'\n'"$stray"
	say "the manifests under kubernetes/ name $new/{auth,hello,monolith} (git diff kubernetes/ shows the change)"
}

# ---- secrets ------------------------------------------------------------

# keys runs cmd/keys (make keys, make rotate-keys): KEYS_CMD names a built
# one, else go run from the repository.
keys() {
	if [[ -n ${KEYS_CMD:-} ]]; then
		"$KEYS_CMD" "$@"
	else
		(cd "$root" && go run ./cmd/keys "$@")
	fi
}

has_secret() {
	[[ -n $(kc get secret "$1" --ignore-not-found --output name) ]]
}

# ssa renders `kubectl create ARGS...` and applies it server-side: created
# the first time, updated in place after, and nothing copied into an
# annotation (a client-side apply would copy the whole object, keys
# included, into last-applied-configuration, which anyone who may read the
# Secret's metadata sees).
ssa() {
	kc create "$@" --dry-run=client --output yaml |
		kc apply --server-side --force-conflicts --field-manager=deploy.sh -f -
}

upload_signing_key() {
	ssa secret generic "$SIGNING_SECRET" --from-file="$PRIVATE_KEY=$KEYS_DIR/$PRIVATE_KEY"
}

upload_public_keys() {
	ssa secret generic "$PUBLIC_SECRET" --from-file="$PUBLIC_KEYS=$KEYS_DIR/$PUBLIC_KEYS"
}

# token_keys makes the token keys once and then keeps them: a new key on
# every deploy would log everyone out. The pair comes from keys/ (make
# keys), made there first if neither keys/ nor the cluster has one; when
# the cluster has them, they are kept whatever keys/ holds. Only a
# rotation (deploy.sh rotate) changes them, without logging anyone out.
token_keys() {
	if has_secret "$SIGNING_SECRET" && has_secret "$PUBLIC_SECRET"; then
		echo "secret/$SIGNING_SECRET and secret/$PUBLIC_SECRET kept (they exist; deploy.sh rotate changes them)"
		return
	fi
	if has_secret "$SIGNING_SECRET" || has_secret "$PUBLIC_SECRET"; then
		die "only one of secret/$SIGNING_SECRET and secret/$PUBLIC_SECRET exists: delete it (kubectl delete secret $SIGNING_SECRET $PUBLIC_SECRET --ignore-not-found) and run make secrets again, which uploads keys/"
	fi
	if [[ ! -f $KEYS_DIR/$PRIVATE_KEY || ! -f $KEYS_DIR/$PUBLIC_KEYS ]]; then
		say "no token keys in $KEYS_DIR nor on the cluster: making a key pair (cmd/keys gen; keep $KEYS_DIR, it is what a rotation starts from)"
		keys gen -dir "$KEYS_DIR"
	fi
	[[ ! -f $KEYS_DIR/$NEXT_KEY ]] || say "$KEYS_DIR/$NEXT_KEY (a staged rotation) is not uploaded: deploy.sh rotate promote does that"
	upload_signing_key
	upload_public_keys
}

# users_secret uploads keys/users (make users-file) as Secret users, which
# components/users-file mounts. $1 = required: the manifests mount it.
users_secret() {
	if [[ -f $KEYS_DIR/$USERS_KEY ]]; then
		ssa secret generic "$USERS_SECRET" --from-file="$USERS_KEY=$KEYS_DIR/$USERS_KEY"
	elif [[ ${1:-} == required ]] && ! has_secret "$USERS_SECRET"; then
		die "the manifests mount secret/$USERS_SECRET (components/users-file), but $KEYS_DIR/$USERS_KEY is missing: run make users-file first"
	fi
}

# secrets makes the token keys, the users Secret when keys/users exists,
# and what the lessons' bare pods mount (pods/secure-monolith.yaml): the
# TLS pair and nginx/proxy.conf.template. The frontend's own files come
# from kubernetes/base's generators (deploy).
secrets() {
	need_tls
	[[ -f $root/nginx/proxy.conf.template ]] || die "$root/nginx/proxy.conf.template is missing"
	set_namespace
	ensure_namespace
	token_keys
	users_secret
	# Only the certificate and key: the CA's key stays on this machine.
	ssa secret generic "$TLS_SECRET" \
		--from-file=cert.pem="$root/tls/cert.pem" --from-file=key.pem="$root/tls/key.pem"
	ssa configmap "$PROXY_CONF" --from-file=proxy.conf.template="$root/nginx/proxy.conf.template"
}

# ensure_namespace creates the namespace if it does not exist and makes the
# API server enforce what the manifests promise: the restricted Pod Security
# profile. Never on "default", whose labels belong to the cluster's owner.
ensure_namespace() {
	if [[ $NAMESPACE == default ]]; then
		say "namespace default: left as it is, without the restricted Pod Security label (NAMESPACE=ud615 makes and labels a namespace of the app's own)"
		return
	fi
	if [[ -z $("$KUBECTL" get namespace "$NAMESPACE" --ignore-not-found --output name) ]]; then
		"$KUBECTL" create namespace "$NAMESPACE"
	fi
	"$KUBECTL" label namespace "$NAMESPACE" --overwrite \
		pod-security.kubernetes.io/enforce=restricted \
		pod-security.kubernetes.io/enforce-version=latest
}

# ---- rotate -------------------------------------------------------------

# rotate runs one step of a key rotation on the cluster, none of which logs
# anyone out: the step on the files in keys/ (cmd/keys), the upload of the
# one Secret it changed, then a wait until every pod concerned has logged
# "keys reloaded" with the new key (the kubelet refreshes mounted Secrets
# within about a minute; the services re-read their files every
# KEYS_RELOAD_INTERVAL).
#   add      a new key B; its public key to every service (A still signs)
#   promote  B signs; A's tokens are still accepted
#   retire   only B is accepted: only once TOKEN_TTL has passed since
#            promote, so that no token of A is still valid (FORCE=1: now)
# A step interrupted after its change to keys/ can be run again: it
# uploads what keys/ holds.
rotate() {
	local step=${1:-} since
	case $step in
	add | promote | retire) ;;
	*) die "usage: deploy.sh rotate add|promote|retire (in this order; make rotate STEP=...)" ;;
	esac
	set_namespace
	has_secret "$SIGNING_SECRET" && has_secret "$PUBLIC_SECRET" || die "no token keys on the cluster: make secrets (or make deploy) first"
	[[ -f $KEYS_DIR/$PRIVATE_KEY && -f $KEYS_DIR/$PUBLIC_KEYS ]] || die "no key pair in $KEYS_DIR: rotate on the machine whose keys/ made the cluster's keys"
	"rotate_$step"
}

# b64 prints a file as the API server returns a Secret's value.
b64() {
	base64 <"$1" | tr -d '\n'
}

secret_value() {
	local key=${2//./\\.}
	kc get secret "$1" --output "jsonpath={.data.$key}"
}

# signs_local says whether the cluster signs with keys/jwt-private.pem.
signs_local() {
	[[ $(secret_value "$SIGNING_SECRET" "$PRIVATE_KEY") == "$(b64 "$KEYS_DIR/$PRIVATE_KEY")" ]]
}

publishes_local() {
	[[ $(secret_value "$PUBLIC_SECRET" "$PUBLIC_KEYS") == "$(b64 "$KEYS_DIR/$PUBLIC_KEYS")" ]]
}

# kid_with ROLE prints the ID of the key `keys list` marks with ROLE.
kid_with() {
	keys list -dir "$KEYS_DIR" | awk -v role="$1" 'index($0, role) {print $1; exit}'
}

rotate_add() {
	local kid
	signs_local || die "the cluster signs with another key than $KEYS_DIR/$PRIVATE_KEY: rotate with the keys/ that made the cluster's keys"
	if [[ -f $KEYS_DIR/$NEXT_KEY ]]; then
		say "$KEYS_DIR/$NEXT_KEY is staged already (an earlier add): publishing it"
	else
		keys add -dir "$KEYS_DIR" | sed '/^Next:/,$d' # what comes next is said here
	fi
	kid=$(kid_with "staged to sign next")
	[[ -n $kid ]] || die "no staged key in $KEYS_DIR"
	local t0=$SECONDS
	upload_public_keys
	say "published key $kid; waiting until every pod accepts it"
	wait_reloaded "app in (auth,hello,monolith)" "\"$kid\"" $t0
	say "every pod accepts $kid. Next: make rotate STEP=promote"
}

rotate_promote() {
	local kid
	if [[ -f $KEYS_DIR/$NEXT_KEY ]]; then
		publishes_local || die "the cluster's public keys are not $KEYS_DIR/$PUBLIC_KEYS: make rotate STEP=add first"
		keys promote -dir "$KEYS_DIR" | sed '/^Next:/,$d' # what comes next is said here
	elif signs_local; then
		die "no key staged in $KEYS_DIR: make rotate STEP=add first"
	else
		say "$KEYS_DIR/$PRIVATE_KEY was promoted already (an earlier promote): uploading it"
	fi
	kid=$(kid_with "accepted, signs")
	local t0=$SECONDS
	upload_signing_key
	kc annotate secret "$SIGNING_SECRET" --overwrite "$SIGNING_SINCE=$(date -u +%s)" >/dev/null
	say "uploaded signing key $kid; waiting until every pod that signs uses it"
	wait_reloaded "app in (auth,monolith)" "\"signing\":\"$kid\"" $t0
	say "new tokens are signed with $kid; the old key's stay valid. Next, after TOKEN_TTL: make rotate STEP=retire"
}

rotate_retire() {
	local kid since ttl until now
	signs_local || die "the cluster does not sign with $KEYS_DIR/$PRIVATE_KEY yet: make rotate STEP=promote first"
	since=$(kc get secret "$SIGNING_SECRET" --output "jsonpath={.metadata.annotations.${SIGNING_SINCE//./\\.}}")
	ttl=$(token_ttl)
	if [[ -n $since ]]; then
		[[ $since =~ ^[0-9]+$ ]] || die "secret/$SIGNING_SECRET annotation $SIGNING_SINCE=$since: want seconds since 1970"
		until=$((since + ttl + 30)) # + the verifiers' 30 s leeway
		now=$(date -u +%s)
		if ((now < until)) && [[ -z ${FORCE:-} ]]; then
			die "tokens signed with the old key until promote, $((now - since))s ago, stay valid for TOKEN_TTL (${ttl}s) + 30 s: retire after that, in $((until - now))s (FORCE=1 retires now; the old key's tokens are then refused with 401)"
		fi
	fi
	keys retire -dir "$KEYS_DIR" | sed '/^Next:/,$d' # what comes next is said here
	kid=$(kid_with "accepted, signs")
	local t0=$SECONDS
	upload_public_keys
	say "published only $kid; waiting until every pod accepts only it"
	wait_reloaded "app in (auth,hello,monolith)" "\"accepted\":[\"$kid\"]" $t0
	say "rotation done: only $kid signs and is accepted"
}

# token_ttl prints auth's TOKEN_TTL in seconds (1h unless it sets one).
token_ttl() {
	local v
	v=$(kc get deployment auth --ignore-not-found --output 'jsonpath={.spec.template.spec.containers[?(@.name=="auth")].env[?(@.name=="TOKEN_TTL")].value}')
	case $v in
	"") echo 3600 ;;
	*h) echo $((${v%h} * 3600)) ;;
	*m) echo $((${v%m} * 60)) ;;
	*s) echo "${v%s}" ;;
	*) die "auth's TOKEN_TTL $v: want a whole number of h, m or s" ;;
	esac
}

# wait_reloaded SELECTOR PATTERN T0 waits until every running pod SELECTOR
# matches has logged, since T0 ($SECONDS), a "keys reloaded" line holding
# PATTERN, or, for a pod started since (a rollout, a rescheduled pod), the
# "keys" line every service logs at start with the same fields. Its
# container is the one named as its app label.
wait_reloaded() {
	local selector=$1 pattern=$2 t0=$3 next=$((SECONDS + 20)) pending pod app
	while :; do
		pending=()
		while read -r pod app; do
			[[ -n $pod ]] || continue
			if ! kc logs "$pod" -c "$app" --since="$((SECONDS - t0 + 5))s" 2>/dev/null |
				grep -E '"msg":"keys( reloaded)?"' | grep -qF "$pattern"; then
				pending+=("$pod")
			fi
		done < <(kc get pods -l "$selector" --field-selector=status.phase=Running \
			--output 'jsonpath={range .items[*]}{.metadata.name} {.metadata.labels.app}{"\n"}{end}')
		if ((${#pending[@]} == 0)); then
			say "every pod reloaded its keys within $((SECONDS - t0))s"
			return
		fi
		((SECONDS - t0 < ROTATE_TIMEOUT)) || die "not reloaded within ${ROTATE_TIMEOUT}s: ${pending[*]} (kubectl logs POD | grep 'keys reloaded')"
		if ((SECONDS >= next)); then
			say "after $((SECONDS - t0))s, waiting for ${#pending[@]} pod(s): ${pending[*]}"
			next=$((SECONDS + 20))
		fi
		sleep 2
	done
}

# ---- deploy -------------------------------------------------------------

overlay_dir() {
	local overlay=${1:-} list
	list=$(cd "$here/overlays" && printf '%s ' */ | tr -d /)
	[[ -n $overlay ]] || die "say which overlay: make deploy OVERLAY=<one of: ${list% }>"
	[[ -f $here/overlays/$overlay/kustomization.yaml ]] || die "no overlay $overlay: OVERLAY is one of: ${list% }"
	echo "$here/overlays/$overlay"
}

# render writes kubernetes/overlays/$1 as kustomize builds it to file $2.
# The base generates from nginx/, frontend/ and tls/, outside its
# directory: hence the load restrictor.
render() {
	local dir
	dir=$(overlay_dir "$1")
	need_tls
	"$KUBECTL" kustomize --load-restrictor LoadRestrictionsNone "$dir" >"$2"
}

deploy() {
	local rendered placeholder
	overlay_dir "$1" >/dev/null
	if [[ $(files_registry) == "$PLACEHOLDER" ]]; then
		die "the manifests name the placeholder registry $PLACEHOLDER: point them at the registry you pushed to first: make set-registry REGISTRY=<registry> (docs/tutorial.md, section 2)"
	fi
	rendered=$(mktemp)
	tmpfiles+=("$rendered")
	render "$1" "$rendered"
	placeholder=$(grep -E "image: $PLACEHOLDER/" "$rendered" | sort -u | sed 's/^ */  /' || true)
	if [[ -n $placeholder ]]; then
		die "the manifests name the placeholder registry $PLACEHOLDER:"$'\n'"$placeholder"$'\n'"point them at the registry you pushed to first: make set-registry REGISTRY=<registry> (docs/tutorial.md, section 2)"
	fi
	set_namespace
	ensure_namespace
	token_keys
	if grep -q "secretName: $USERS_SECRET\$" "$rendered"; then
		users_secret required
	fi
	# The generated TLS Secret server-side (no key copied into an
	# annotation); everything else client-side, as the tutorial's kubectl
	# apply -f commands do, so that they later find the
	# last-applied-configuration they expect.
	kc apply --server-side --force-conflicts --field-manager=deploy.sh -l "$TLS_COMPONENT" -f "$rendered"
	release_replicas
	kc apply -l "${TLS_COMPONENT/=/!=}" -f "$rendered"
	rm -f "$rendered"
	wait_autoscaled
	wait_rollouts
	kc get service frontend
}

# release_replicas hands the replica count of each autoscaled Deployment to
# its HorizontalPodAutoscaler. The manifests set no replicas, but a
# Deployment applied by an earlier version of them (replicas: 3) keeps the
# count in its last-applied-configuration, and kubectl apply would delete a
# field that is there and no longer in the file: the count would drop to the
# default, 1, until the HPA raised it again. So the field goes from the
# annotation first, with the Deployment itself unchanged, as Kubernetes'
# documentation advises for client-side apply (there with kubectl apply
# edit-last-applied; view-last-applied prints YAML, where spec.replicas is
# the one line "  replicas: N" at two spaces).
release_replicas() {
	local d last
	for d in "${AUTOSCALED[@]}"; do
		last=$(kc apply view-last-applied "deployment/$d" 2>/dev/null) || continue # not there yet
		grep -q '^  replicas:' <<<"$last" || continue
		grep -v '^  replicas:' <<<"$last" | kc apply set-last-applied -f -
		say "deployment/$d: replicas removed from its last-applied-configuration; its HorizontalPodAutoscaler keeps the count ($(kc get deployment "$d" --output 'jsonpath={.spec.replicas}'))"
	done
}

# wait_autoscaled waits until each autoscaled Deployment has its HPA's
# minReplicas: a new Deployment starts with 1 pod, and the HPA controller
# raises it at its next sync (every 15 s), metrics or not.
wait_autoscaled() {
	local start=$SECONDS d min n
	for d in "${AUTOSCALED[@]}"; do
		min=$(kc get hpa "$d" --output 'jsonpath={.spec.minReplicas}')
		until n=$(kc get deployment "$d" --output 'jsonpath={.spec.replicas}') && ((${n:-0} >= ${min:-1})); do
			if ((SECONDS - start >= ROLLOUT_TIMEOUT)); then
				kc describe hpa "$d" >&2 || true
				die "deployment $d: $n replicas, its HorizontalPodAutoscaler's minReplicas $min not reached within ${ROLLOUT_TIMEOUT}s"
			fi
			sleep 2
		done
	done
}

# wait_rollouts waits for every deployment to roll out. After 30 s, and
# every 30 s after that, it says why the pods that are not ready are not.
wait_rollouts() {
	local start=$SECONDS next=$((SECONDS + 30)) pending=("${DEPLOYMENTS[@]}") d out still
	while ((${#pending[@]} > 0)); do
		still=()
		for d in "${pending[@]}"; do
			# Exits non-zero once the progress deadline is exceeded.
			if ! out=$(kc rollout status "deployment/$d" --watch=false 2>&1); then
				echo "$out" >&2
				explain "$d"
				die "deployment $d failed to roll out"
			fi
			if [[ $out == *"successfully rolled out"* ]]; then
				echo "$out"
			else
				still+=("$d")
			fi
		done
		pending=(${still[@]+"${still[@]}"})
		((${#pending[@]} > 0)) || break
		if ((SECONDS >= next)); then
			say "after $((SECONDS - start))s, waiting for: ${pending[*]}"
			for d in "${pending[@]}"; do
				explain "$d"
			done
			next=$((SECONDS + 30))
		fi
		if ((SECONDS - start >= ROLLOUT_TIMEOUT)); then
			for d in "${pending[@]}"; do
				explain "$d"
			done
			die "not rolled out within ${ROLLOUT_TIMEOUT}s: ${pending[*]}"
		fi
		sleep 2
	done
}

# explain prints, for each pod of deployment $1 that is not ready, why:
# the scheduler's message for a Pending pod, the waiting reason with the
# image (ImagePullBackOff) or the last log lines (CrashLoopBackOff), and
# the pod's latest warning event (a missing ConfigMap key, a failing
# probe). not-ready.tmpl picks the pods; kubernetes/check tests it.
explain() {
	local d=$1 selector pod container reason detail
	selector=$(kc get deployment "$d" --output 'go-template={{range $k, $v := .spec.selector.matchLabels}}{{$k}}={{$v}},{{end}}' 2>/dev/null) || return 0
	while IFS=$'\t' read -r pod container reason detail; do
		[[ -n $pod ]] || continue
		[[ $container != - ]] || container=
		say "  pod $pod${container:+ container $container}: $reason${detail:+: $detail}"
		case $reason in
		CrashLoopBackOff | Error)
			kc logs "$pod" -c "$container" --previous --tail=5 2>/dev/null | sed 's/^/      | /' >&2 || true
			;;
		esac
		case $reason in
		ImagePullBackOff | ErrImagePull | CrashLoopBackOff) ;;
		*)
			kc get events --field-selector "involvedObject.name=$pod,type=Warning" \
				--sort-by=.lastTimestamp --output 'go-template={{range .items}}{{.reason}}: {{.message}}{{"\n"}}{{end}}' 2>/dev/null |
				tail -n 1 | sed 's/^/      event /' >&2 || true
			;;
		esac
	done < <(kc get pods -l "${selector%,}" --output "go-template-file=$here/not-ready.tmpl" 2>/dev/null || true)
}

# ---- undeploy -----------------------------------------------------------

undeploy() {
	local rendered
	rendered=$(mktemp)
	tmpfiles+=("$rendered")
	render "$1" "$rendered"
	set_namespace
	# Deleting the frontend Service deletes the cloud load balancer; kubectl
	# waits until the cloud controller has removed it (its finalizer).
	kc delete --ignore-not-found -f "$rendered"
	# Earlier versions of the generated ConfigMaps and Secrets, kept for
	# rollbacks, carry the label every generated object has.
	kc delete configmap,secret --ignore-not-found -l app=frontend,app.kubernetes.io/part-of=ud615
	# The token keys too: keys/ keeps them, the next deploy uploads them again.
	kc delete secret "$TLS_SECRET" "$SIGNING_SECRET" "$PUBLIC_SECRET" "$USERS_SECRET" --ignore-not-found
	kc delete configmap "$PROXY_CONF" --ignore-not-found
	rm -f "$rendered"
}

case ${1:-} in
set-registry)
	[[ $# -eq 2 ]] || die "usage: deploy.sh set-registry REGISTRY"
	set_registry "$2"
	;;
secrets) secrets ;;
rotate) rotate "${2:-}" ;;
deploy) deploy "${2:-}" ;;
undeploy) undeploy "${2:-}" ;;
*) die "usage: deploy.sh set-registry REGISTRY | secrets | rotate add|promote|retire | deploy OVERLAY | undeploy OVERLAY" ;;
esac
