#!/bin/sh
# The official nginx image's entrypoint, reduced to what the manifests use
# (20-envsubst-on-templates.sh): each /etc/nginx/templates/**/*.template is
# rendered into /etc/nginx/conf.d with envsubst, which replaces only the
# variables set in the environment whose names match NGINX_ENVSUBST_FILTER, so
# nginx's own $variables stay. Skipped when there are no templates or conf.d
# is read-only (a ConfigMap mounted there).
set -eu

render_templates() {
	dir=${NGINX_ENVSUBST_TEMPLATE_DIR:-/etc/nginx/templates}
	suffix=${NGINX_ENVSUBST_TEMPLATE_SUFFIX:-.template}
	out=${NGINX_ENVSUBST_OUTPUT_DIR:-/etc/nginx/conf.d}
	filter=${NGINX_ENVSUBST_FILTER:-}
	[ -d "$dir" ] || return 0
	if [ ! -w "$out" ]; then
		echo "$0: $out is not writable, templates not rendered" >&2
		return 0
	fi
	defined=$(awk "END { for (name in ENVIRON) if (name ~ /$filter/) printf \"\${%s} \", name }" </dev/null)
	# A ConfigMap volume keeps its files in hidden ..data directories behind
	# symlinks: follow the links, skip the hidden copies.
	find "$dir" -follow -type f -name "*$suffix" ! -path '*/.*' | while read -r template; do
		rel=${template#"$dir"/}
		dst=$out/${rel%"$suffix"}
		mkdir -p "$(dirname "$dst")"
		echo "$0: rendering $template to $dst" >&2
		envsubst "$defined" <"$template" >"$dst"
	done
}

if [ "${1:-}" = nginx ]; then
	render_templates
fi
exec "$@"
