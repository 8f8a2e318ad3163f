#!/usr/bin/env bash
# deploy.sh puts the app on the cluster of the current kubectl context. The
# Makefile calls it; it can be run by hand as well:
#
#   kubernetes/deploy.sh set-registry REGISTRY  # make set-registry: the manifests name REGISTRY
#   kubernetes/deploy.sh secrets                # make secrets: jwt-secret and the lessons' objects
#   kubernetes/deploy.sh deploy OVERLAY         # make deploy: kubernetes/overlays/OVERLAY, then wait
#   kubernetes/deploy.sh undeploy OVERLAY       # make undeploy: delete what deploy made
#
# Settings, from the environment:
#   NAMESPACE        the namespace to use (default: the context's, else "default")
#   ROLLOUT_TIMEOUT  how long deploy waits for the rollouts, in seconds (300)
#   KUBECTL          the kubectl to run (default: kubectl)
#
# Every step can run again: set-registry rewrites whatever registry the
# files name, secrets keeps an existing signing key, deploy applies.
set -euo pipefail

# The names the manifests refer to. kubernetes/check runs this script with a
# fake kubectl and checks that every Secret, ConfigMap and key a pod uses is
# made here or by a generator of kubernetes/base.
readonly TLS_SECRET=tls-certs         # keys cert.pem, key.pem; mounted at /etc/tls
readonly JWT_SECRET=jwt-secret        # key JWT_SECRET, the services' env JWT_SECRET
readonly JWT_SECRET_KEY=JWT_SECRET
readonly PROXY_CONF=nginx-proxy-conf  # key proxy.conf.template (pods/secure-monolith.yaml)
# The images built here (the Makefile's BINARIES), under one registry; the
# committed files name a placeholder that deploy refuses.
readonly BINARIES='auth|hello|monolith'
readonly PLACEHOLDER=ghcr.io/example/app
# The generated TLS Secret's label: applied server-side, see deploy.
readonly TLS_COMPONENT=app.kubernetes.io/component=frontend-tls
# The deployments deploy waits for.
readonly DEPLOYMENTS=(auth hello frontend)

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
root=$(dirname "$here")
KUBECTL=${KUBECTL:-kubectl}
ROLLOUT_TIMEOUT=${ROLLOUT_TIMEOUT:-300}
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

# jwt_secret makes the signing key once and then keeps it. A new key on
# every deploy would invalidate every token issued so far (everyone logged
# out), and during a rollout old and new pods would each reject the other's
# tokens. To rotate it on purpose: kubectl delete secret jwt-secret, make
# secrets, then kubectl rollout restart the deployments.
#
# kubectl create, not apply: apply would copy the key into the object's
# last-applied-configuration annotation, readable by anyone who may read
# the Secret's metadata.
jwt_secret() {
	if [[ -n $(kc get secret "$JWT_SECRET" --ignore-not-found --output name) ]]; then
		echo "secret/$JWT_SECRET kept (it exists)"
		return
	fi
	local keyfile
	keyfile=$(mktemp) # mode 0600; a file keeps the key out of the process list
	tmpfiles+=("$keyfile")
	head -c 48 /dev/urandom | base64 | tr -d '\n' >"$keyfile" # 64 bytes
	kc create secret generic "$JWT_SECRET" --from-file="$JWT_SECRET_KEY=$keyfile"
	rm -f "$keyfile"
}

# ssa renders `kubectl create ARGS...` and applies it server-side: created
# the first time, updated in place after, and nothing copied into an
# annotation (the TLS key stays in the Secret's data only).
ssa() {
	kc create "$@" --dry-run=client --output yaml |
		kc apply --server-side --force-conflicts --field-manager=deploy.sh -f -
}

# secrets makes jwt-secret and what the lessons' bare pods mount
# (pods/secure-monolith.yaml): the TLS pair and nginx/proxy.conf.template. The
# frontend's own files come from kubernetes/base's generators (deploy).
secrets() {
	need_tls
	[[ -f $root/nginx/proxy.conf.template ]] || die "$root/nginx/proxy.conf.template is missing"
	set_namespace
	ensure_namespace
	jwt_secret
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
	jwt_secret
	# The generated TLS Secret server-side (no key copied into an
	# annotation); everything else client-side, as the tutorial's kubectl
	# apply -f commands do, so that they later find the
	# last-applied-configuration they expect.
	kc apply --server-side --force-conflicts --field-manager=deploy.sh -l "$TLS_COMPONENT" -f "$rendered"
	kc apply -l "${TLS_COMPONENT/=/!=}" -f "$rendered"
	rm -f "$rendered"
	wait_rollouts
	kc get service frontend
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
	kc delete secret "$TLS_SECRET" "$JWT_SECRET" --ignore-not-found
	kc delete configmap "$PROXY_CONF" --ignore-not-found
	rm -f "$rendered"
}

case ${1:-} in
set-registry)
	[[ $# -eq 2 ]] || die "usage: deploy.sh set-registry REGISTRY"
	set_registry "$2"
	;;
secrets) secrets ;;
deploy) deploy "${2:-}" ;;
undeploy) undeploy "${2:-}" ;;
*) die "usage: deploy.sh set-registry REGISTRY | secrets | deploy OVERLAY | undeploy OVERLAY" ;;
esac
