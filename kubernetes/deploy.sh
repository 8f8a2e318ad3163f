#!/usr/bin/env bash
# deploy.sh puts the app on the cluster of the current kubectl context. The
# Makefile calls it; it can be run by hand as well:
#
#   kubernetes/deploy.sh secrets    # make secrets: Secrets and ConfigMaps
#   kubernetes/deploy.sh deploy     # make deploy: secrets, then kubectl apply -k
#   kubernetes/deploy.sh undeploy   # make undeploy: delete all of it
#   kubernetes/deploy.sh overlay DIR  # write the image overlay deploy uses (tests)
#
# Settings, from the environment:
#   NAMESPACE  the namespace to use (default: the context's, else "default")
#   REGISTRY   where the auth and hello images live (default: the one the
#              manifests name, ghcr.io/example/app as committed)
#   VERSION    their tag (default: the manifests', 1.0.0)
#   TLS_DIR    the certificate and key from `make certs` (default: tls/)
#   KUBECTL    the kubectl to run (default: kubectl)
#
# Every step is idempotent: objects are rendered with
# `kubectl create --dry-run=client -o yaml` and applied, so running it again
# updates them in place.
set -euo pipefail

# The names the manifests refer to. kubernetes/check runs this script with a
# fake kubectl and checks that every Secret, ConfigMap and key a pod uses is
# one created here.
readonly TLS_SECRET=tls-certs         # keys cert.pem, key.pem; mounted at /etc/tls
readonly JWT_SECRET=jwt-secret        # key JWT_SECRET, the services' env JWT_SECRET
readonly JWT_SECRET_KEY=JWT_SECRET
readonly FRONTEND_CONF=nginx-frontend-conf # key frontend.conf.template
readonly PROXY_CONF=nginx-proxy-conf       # key proxy.conf.template
readonly UI_FILES=frontend-ui              # frontend/'s files, at /ui/ (optional in the pod)
# The images that kustomization.yaml deploys (the monolith image is used only
# by pods/), and the deployments to wait for.
readonly IMAGES=(auth hello)
readonly DEPLOYMENTS=(auth hello frontend)

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
root=$(dirname "$here")
KUBECTL=${KUBECTL:-kubectl}
TLS_DIR=${TLS_DIR:-$root/tls}
NGINX_DIR=$root/nginx
# The registry the manifests name now: ghcr.io/example/app as committed, or
# the learner's after the tutorial's sed.
files_registry=$(sed -n 's|^ *image: \(.*\)/auth:.*|\1|p' "$here/deployments/auth.yaml")
REGISTRY=${REGISTRY:-$files_registry}
VERSION=${VERSION:-}
# Set by secrets when a file nginx reads at start has changed.
frontend_files_changed=false

die() {
	echo "deploy.sh: $*" >&2
	exit 1
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
	echo "deploy.sh: context $("$KUBECTL" config current-context 2>/dev/null || echo '(none)'), namespace $NAMESPACE" >&2
}

# create_apply renders `kubectl create ARGS...` and applies it: created the
# first time, updated in place after. It prints kubectl's answer and sets
# changed=true if an existing object was updated.
changed=false
create_apply() {
	local out
	out=$(kc create "$@" --dry-run=client --output yaml | kc apply -f -)
	echo "$out"
	changed=false
	if [[ $out == *" configured" ]]; then
		changed=true
	fi
}

secrets() {
	local f
	for f in "$TLS_DIR/cert.pem" "$TLS_DIR/key.pem"; do
		[[ -f $f ]] || die "$f is missing: run make certs first (go run ./cmd/certgen -out tls)"
	done
	for f in "$NGINX_DIR/frontend.conf.template" "$NGINX_DIR/proxy.conf.template"; do
		[[ -f $f ]] || die "$f is missing"
	done
	set_namespace
	"$KUBECTL" create namespace "$NAMESPACE" --dry-run=client --output yaml | "$KUBECTL" apply -f -

	# Only the certificate and key: the CA's key, if certgen wrote one, stays
	# on this machine.
	create_apply secret generic "$TLS_SECRET" \
		--from-file=cert.pem="$TLS_DIR/cert.pem" --from-file=key.pem="$TLS_DIR/key.pem"
	if $changed; then frontend_files_changed=true; fi

	# The signing key is made once and then kept. A new key on every deploy
	# would invalidate every token issued so far (everyone logged out), and
	# during a rollout old and new pods would each reject the other's tokens.
	# To rotate it on purpose: kubectl delete secret jwt-secret, run this
	# again, then kubectl rollout restart the deployments.
	if [[ -z $(kc get secret "$JWT_SECRET" --ignore-not-found --output name) ]]; then
		local keyfile
		keyfile=$(mktemp) # mode 0600; a file keeps the key out of the process list
		# shellcheck disable=SC2064 # expand now: keyfile is local
		trap "rm -f '$keyfile'" EXIT
		head -c 48 /dev/urandom | base64 | tr -d '\n' >"$keyfile" # 64 bytes
		create_apply secret generic "$JWT_SECRET" --from-file="$JWT_SECRET_KEY=$keyfile"
		rm -f "$keyfile"
	else
		echo "secret/$JWT_SECRET kept (it exists)"
	fi

	create_apply configmap "$FRONTEND_CONF" \
		--from-file=frontend.conf.template="$NGINX_DIR/frontend.conf.template"
	if $changed; then frontend_files_changed=true; fi
	create_apply configmap "$PROXY_CONF" --from-file=proxy.conf.template="$NGINX_DIR/proxy.conf.template"

	# The static UI: the files at the top of frontend/ (a directory's
	# subdirectories are skipped). The frontend mounts it optionally, so
	# without it /ui/ is just empty.
	if [[ -f $root/frontend/index.html ]]; then
		create_apply configmap "$UI_FILES" --from-file="$root/frontend/"
		if $changed; then frontend_files_changed=true; fi
	fi
}

# overlay writes to dir a kustomization that is kubernetes/ with the auth and
# hello images at $REGISTRY/<image>:$VERSION and their version labels set to
# match. dir must be outside kubernetes/.
overlay() {
	local dir=$1 abs up image path label parts
	abs=$(cd "$dir" && pwd -P)
	# kustomize wants a relative path: climb from dir to / and descend.
	IFS=/ read -ra parts <<<"${abs#/}"
	up=$(printf '../%.0s' "${parts[@]}")
	{
		echo "# Written by kubernetes/deploy.sh: kubernetes/ with REGISTRY=$REGISTRY VERSION=${VERSION:-(unchanged)}"
		echo "apiVersion: kustomize.config.k8s.io/v1beta1"
		echo "kind: Kustomization"
		echo "resources:"
		echo "  - ${up}${here#/}"
		echo "images:"
		for image in "${IMAGES[@]}"; do
			echo "  - name: $files_registry/$image"
			echo "    newName: $REGISTRY/$image"
			if [[ -n $VERSION ]]; then echo "    newTag: \"$VERSION\""; fi
		done
		if [[ -n $VERSION ]]; then
			echo "patches:"
			for image in "${IMAGES[@]}"; do
				echo "  - target:"
				echo "      kind: Deployment"
				echo "      labelSelector: app=$image"
				echo "    patch: |-"
				for path in /metadata/labels /spec/template/metadata/labels; do
					for label in version app.kubernetes.io~1version; do
						echo "      - op: replace"
						echo "        path: $path/$label"
						echo "        value: \"$VERSION\""
					done
				done
			done
		fi
	} >"$dir/kustomization.yaml"
}

deploy() {
	secrets
	# Let the API server enforce what the manifests promise.
	"$KUBECTL" label namespace "$NAMESPACE" --overwrite \
		pod-security.kubernetes.io/enforce=restricted \
		pod-security.kubernetes.io/enforce-version=latest

	local dir
	dir=$(mktemp -d)
	# shellcheck disable=SC2064 # expand now: dir is local
	trap "rm -rf '$dir'" EXIT
	overlay "$dir"
	kc apply -k "$dir"
	rm -rf "$dir"

	# nginx reads its config and certificate at start only; the UI's files
	# reach a running pod within a minute or so (the kubelet syncs ConfigMap
	# volumes), but a restart serves them at once and everywhere alike.
	if $frontend_files_changed; then
		kc rollout restart deployment/frontend
	fi
	local d
	for d in "${DEPLOYMENTS[@]}"; do
		kc rollout status "deployment/$d" --timeout=5m
	done
	kc get service frontend
}

undeploy() {
	set_namespace
	kc delete -k "$here" --ignore-not-found
	kc delete secret "$TLS_SECRET" "$JWT_SECRET" --ignore-not-found
	kc delete configmap "$FRONTEND_CONF" "$PROXY_CONF" "$UI_FILES" --ignore-not-found
}

case ${1:-} in
secrets) secrets ;;
deploy) deploy ;;
undeploy) undeploy ;;
overlay)
	[[ $# -eq 2 ]] || die "usage: deploy.sh overlay DIR"
	overlay "$2"
	;;
*) die "usage: deploy.sh secrets|deploy|undeploy|overlay DIR" ;;
esac
