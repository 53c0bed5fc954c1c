#!/usr/bin/env bash
# docs-assets.sh: fetch the browser assets that internal/apidoc embeds (Swagger UI for /docs,
# Redoc for /redoc) from the npm registry at the pinned versions below, and keep only the files
# the pages load, with their licences. Run it after changing a version; commit what it writes.
#   scripts/docs-assets.sh
set -euo pipefail

SWAGGER_UI_VERSION=5.35.0 # npm swagger-ui-dist, Apache-2.0
REDOC_VERSION=2.5.4       # npm redoc, MIT

root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/internal/apidoc/assets
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
command -v npm >/dev/null 2>&1 || { echo "docs-assets.sh: npm is needed (apt-get install npm)" >&2; exit 1; }

(cd "$tmp" && npm pack --silent "swagger-ui-dist@$SWAGGER_UI_VERSION" "redoc@$REDOC_VERSION" >/dev/null)
mkdir -p "$tmp/swagger" "$tmp/redoc"
tar -xzf "$tmp/swagger-ui-dist-$SWAGGER_UI_VERSION.tgz" -C "$tmp/swagger"
tar -xzf "$tmp/redoc-$REDOC_VERSION.tgz" -C "$tmp/redoc"

rm -rf "$out"
mkdir -p "$out"
cp "$tmp/swagger/package/swagger-ui-bundle.js" "$tmp/swagger/package/swagger-ui.css" "$out/"
cp "$tmp/swagger/package/LICENSE" "$out/swagger-ui.LICENSE"
cp "$tmp/swagger/package/NOTICE" "$out/swagger-ui.NOTICE"
cp "$tmp/redoc/package/bundles/redoc.standalone.js" "$out/"
cp "$tmp/redoc/package/LICENSE" "$out/redoc.LICENSE"
cat >"$out/VERSIONS" <<V
swagger-ui-dist $SWAGGER_UI_VERSION Apache-2.0 (swagger-ui.LICENSE, swagger-ui.NOTICE)
redoc $REDOC_VERSION MIT (redoc.LICENSE)
V
ls -l "$out"
