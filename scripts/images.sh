#!/usr/bin/env bash
# images.sh: builds local stand-ins for the official images that docker-compose/*.yml,
# deploy/Dockerfile and internal/testenv use, for machines that reach no image registry.
#
#   eval "$(scripts/images.sh)"     build what is missing or stale, then set the variables
#   docker compose -f docker-compose/l2.yml up --build
#
# Every image is built from Debian bookworm (debootstrap from the mirror apt uses here, then
# `docker import`) under a name of its own, never an official tag. Standard output is the list
# of variables that point the compose files, the Dockerfile's build arguments and testenv at
# them (the compose files and the Dockerfile default to the official images):
#
#   POSTGRES_IMAGE    dblayers-local/postgres:15      postgres:15-alpine
#   REDIS_IMAGE       dblayers-local/redis:7          redis:7-alpine
#   MONGO_IMAGE       dblayers-local/mongo:7          mongo:7 (FerretDB on PostgreSQL, with users)
#   PROMETHEUS_IMAGE  dblayers-local/prometheus:2     prom/prometheus
#   GOLANG_IMAGE      dblayers-local/golang:1.26      golang:1.26 (with the modules of go.sum)
#   RUNTIME_IMAGE     dblayers-local/static:nonroot   gcr.io/distroless/static-debian12:nonroot
#   TOXIPROXY_IMAGE   dblayers-local/toxiproxy:2      ghcr.io/shopify/toxiproxy:2.12.0 (drills)
#
# Debian has no Grafana, so GRAFANA_IMAGE keeps its official default (see TESTING.md).
# Each image carries a label with the hash of what it was built from (its recipe in
# scripts/images/, the base image, and the binaries or modules copied in); an image whose label
# matches is kept, so a second run only checks and takes seconds. Needs a running Docker engine.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$REPO/scripts/lib.sh"

RECIPES=$REPO/scripts/images
BASE_IMAGE=dblayers-local/debian:bookworm
LABEL=dblayers.recipe

docker info >/dev/null 2>&1 || die "no Docker engine answers (docker info failed)"

work=$(mktemp -d "${TMPDIR:-/tmp}/dblayers-images.XXXXXX")
trap 'rm -rf "$work"' EXIT

# apt_mirror: the Debian mirror apt uses on this machine.
apt_mirror() {
	local uri
	uri=$(grep -hoE '^(URIs:[[:space:]]*|deb[[:space:]]+(\[[^]]*\][[:space:]]+)?)[a-z]+://[^[:space:]]+' \
		/etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
		grep -v security | head -n1 | grep -oE '[a-z]+://[^[:space:]]+' || true)
	echo "${uri:-http://deb.debian.org/debian}"
}

# recipe_label IMAGE: the recipe hash IMAGE was built from, or nothing when it does not exist.
recipe_label() {
	docker image inspect -f "{{index .Config.Labels \"$LABEL\"}}" "$1" 2>/dev/null || true
}

# fresh IMAGE HASH: whether IMAGE exists and was built from HASH (and say so).
fresh() {
	if [[ $(recipe_label "$1") == "$2" ]]; then
		say "$1: up to date"
		return 0
	fi
	say "$1: building"
	return 1
}

# hash_of FILE...: one sha256 over the contents of FILEs (directories recursively, sorted).
hash_of() {
	find "$@" -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | cut -d' ' -f1 | sha256sum | cut -d' ' -f1
}

# build IMAGE CONTEXT HASH [BASE]: docker build CONTEXT (its Dockerfile FROM BASE, by default
# the Debian base) as IMAGE. The classic builder is enough for these Dockerfiles and needs no
# buildx.
build() {
	DOCKER_BUILDKIT=0 docker build -q --build-arg "BASE=${4:-$BASE_IMAGE}" --label "$LABEL=$3" -t "$1" "$2" >/dev/null ||
		die "docker build of $1 failed"
}

# The Debian base: a minimal bookworm root file system, imported as an image.
base() {
	local mirror
	mirror=$(apt_mirror)
	[[ -n $(recipe_label "$BASE_IMAGE") ]] && fresh "$BASE_IMAGE" "$mirror" && return 0
	command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
	debootstrap --variant=minbase bookworm "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 || {
		show_log "$work/debootstrap.log"
		die "debootstrap of bookworm from $mirror failed"
	}
	printf 'deb %s bookworm main\n' "$mirror" >"$work/rootfs/etc/apt/sources.list"
	rm -rf "$work/rootfs/var/lib/apt/lists/"* "$work/rootfs/var/cache/apt/"*.bin
	tar -C "$work/rootfs" -c . | docker import --change "LABEL $LABEL=$mirror" - "$BASE_IMAGE" >/dev/null ||
		die "docker import of $BASE_IMAGE failed"
	rm -rf "$work/rootfs"
}

# From Debian packages: the recipe directory is the whole context.
packaged() {
	local image=$1 dir=$RECIPES/$2 hash
	hash=$(printf '%s %s' "$(docker image inspect -f '{{.Id}}' "$BASE_IMAGE")" "$(hash_of "$dir")" | sha256sum | cut -d' ' -f1)
	fresh "$image" "$hash" || build "$image" "$dir" "$hash"
}

# The mongo stand-in, on the postgres stand-in (FerretDB keeps its documents in PostgreSQL):
# FerretDB's own server (its cmd/ferretdb, at the version tools/ferretdb/go.mod pins), which
# unlike the embeddable one tools/ferretdb wraps can enforce users (SCRAM-SHA-256), as
# mongo:7 does with MONGO_INITDB_ROOT_USERNAME; the _id index trigger tools/ferretdb installs
# (id_lookup.sql); and the mongosh that compose's health check calls (tools/mongosh). FerretDB
# is built from a copy of its module with build/version/version.txt written, as FerretDB's own
# release build does (its server refuses to start without it; the module holds none).
mongo() {
	local image=$1 base=$2 ctx=$work/mongo src=$work/ferretdb-src version src_dir hash
	cp -r "$RECIPES/mongo" "$ctx"
	read -r version src_dir < <(cd "$REPO/tools/ferretdb" && go list -m -f '{{.Version}} {{.Dir}}' github.com/FerretDB/FerretDB) ||
		die "go list of FerretDB's module failed"
	cp -r "$src_dir" "$src" && chmod -R u+w "$src"
	echo "$version" >"$src/build/version/version.txt"
	(cd "$src" && CGO_ENABLED=0 go build -buildvcs=false -trimpath -o "$ctx/ferretdb" ./cmd/ferretdb) ||
		die "go build of FerretDB $version's server failed"
	cp "$REPO/tools/ferretdb/id_lookup.sql" "$ctx/"
	(cd "$REPO" && CGO_ENABLED=0 go build -trimpath -o "$ctx/mongosh" ./tools/mongosh) || die "go build of tools/mongosh failed"
	hash=$(printf '%s %s' "$(docker image inspect -f '{{.Id}}' "$base")" "$(hash_of "$ctx")" | sha256sum | cut -d' ' -f1)
	fresh "$image" "$hash" || build "$image" "$ctx" "$hash" "$base"
}

# The golang stand-in: this machine's Go, and the modules of go.sum in its module cache.
golang() {
	local image=$1 ctx=$work/golang goroot hash
	goroot=$(go env GOROOT)
	hash=$(printf '%s %s %s' "$(docker image inspect -f '{{.Id}}' "$BASE_IMAGE")" "$(go version)" \
		"$(hash_of "$RECIPES/golang" "$REPO/go.mod" "$REPO/go.sum")" | sha256sum | cut -d' ' -f1)
	fresh "$image" "$hash" && return 0
	mkdir -p "$ctx"
	cp "$RECIPES/golang/Dockerfile" "$ctx/"
	cp -a "$goroot" "$ctx/go"
	# Copied from this machine's module cache where it has them (GOPROXY=file://…), else fetched.
	(cd "$REPO" && GOMODCACHE="$ctx/mod" GOFLAGS=-modcacherw \
		GOPROXY="file://$(go env GOMODCACHE)/cache/download,$(go env GOPROXY)" go mod download) ||
		die "go mod download into the golang stand-in failed"
	build "$image" "$ctx" "$hash"
}

# The distroless stand-in: no shell, no package manager; /etc/passwd and /etc/group with root,
# nobody and nonroot (65532), as gcr.io/distroless/static-debian12:nonroot has, and /tmp.
static() {
	local image=$1 root=$work/static hash
	hash=$(declare -f static | sha256sum | cut -d' ' -f1)
	fresh "$image" "$hash" && return 0
	mkdir -p "$root/etc" "$root/tmp" "$root/home/nonroot"
	printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
		'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$root/etc/passwd"
	printf '%s\n' 'root:x:0:' 'nobody:x:65534:' 'nonroot:x:65532:' >"$root/etc/group"
	chmod 1777 "$root/tmp"
	tar -C "$root" --numeric-owner --owner=0 --group=0 --exclude ./home -c . >"$work/static.tar"
	tar -C "$root" --numeric-owner --owner=65532 --group=65532 -rf "$work/static.tar" ./home
	docker import --change "LABEL $LABEL=$hash" --change 'USER 65532:65532' "$work/static.tar" "$image" >/dev/null ||
		die "docker import of $image failed"
}

# The toxiproxy stand-in: Toxiproxy's server and CLI at the version go.mod pins, built here
# (a container reaches no module proxy) as static binaries, on an empty image as the official
# one is. go install with an explicit version resolves the CLI's own dependencies, which the
# project's go.sum does not hold.
toxiproxy() {
	local image=$1 ctx=$work/toxiproxy version hash
	version=$(cd "$REPO" && go list -m -f '{{.Version}}' github.com/Shopify/toxiproxy/v2) ||
		die "go list of Toxiproxy's module failed"
	mkdir -p "$ctx"
	cp "$RECIPES/toxiproxy/Dockerfile" "$ctx/"
	(cd "$ctx" && CGO_ENABLED=0 GOFLAGS='' GOBIN="$ctx/bin" go install -trimpath \
		"github.com/Shopify/toxiproxy/v2/cmd/server@$version" "github.com/Shopify/toxiproxy/v2/cmd/cli@$version") ||
		die "go install of Toxiproxy $version failed"
	mv "$ctx/bin/server" "$ctx/toxiproxy" && mv "$ctx/bin/cli" "$ctx/toxiproxy-cli" && rmdir "$ctx/bin"
	hash=$(hash_of "$ctx")
	fresh "$image" "$hash" || build "$image" "$ctx" "$hash"
}

started=$SECONDS
base
packaged dblayers-local/postgres:15 postgres
packaged dblayers-local/redis:7 redis
packaged dblayers-local/prometheus:2 prometheus
mongo dblayers-local/mongo:7 dblayers-local/postgres:15
golang dblayers-local/golang:1.26
static dblayers-local/static:nonroot
toxiproxy dblayers-local/toxiproxy:2
say "local images ready in $((SECONDS - started))s"

cat <<'EOF'
export POSTGRES_IMAGE=dblayers-local/postgres:15
export REDIS_IMAGE=dblayers-local/redis:7
export MONGO_IMAGE=dblayers-local/mongo:7
export PROMETHEUS_IMAGE=dblayers-local/prometheus:2
export GOLANG_IMAGE=dblayers-local/golang:1.26
export RUNTIME_IMAGE=dblayers-local/static:nonroot
export TOXIPROXY_IMAGE=dblayers-local/toxiproxy:2
EOF
