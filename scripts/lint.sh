#!/usr/bin/env bash
# lint.sh: the checks a careful team runs beside the tests, all of which must pass:
#
#   gofmt -l            no file that gofmt would change
#   go vet ./...
#   staticcheck ./...   honnef.co/go/tools at STATICCHECK_VERSION, installed with `go install`
#                       into $(go env GOPATH)/bin when missing or of another version
#   ShellCheck          every shell script of the repo (installed with apt-get when missing)
#
# scripts/test.sh runs it before the tests. Exits non-zero when any check finds something.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$REPO/scripts/lib.sh"
cd "$REPO"

STATICCHECK_VERSION=2026.2.2 # module version v0.8.2
STATICCHECK_MODULE=honnef.co/go/tools/cmd/staticcheck@v0.8.2

rc=0
fail() {
	say "lint: $1"
	rc=1
}

unformatted=$(gofmt -l cmd internal layers docker-compose deploy)
[[ -z $unformatted ]] || fail "gofmt would change: $unformatted"

go vet ./... || fail "go vet found problems"

staticcheck=$(go env GOPATH)/bin/staticcheck
if ! "$staticcheck" -version 2>/dev/null | grep -q "^staticcheck $STATICCHECK_VERSION "; then
	say "installing staticcheck $STATICCHECK_VERSION"
	go install "$STATICCHECK_MODULE"
fi
"$staticcheck" ./... || fail "staticcheck found problems"

ensure_packages shellcheck
mapfile -t scripts < <(git ls-files '*.sh' .ci/run; git ls-files -o --exclude-standard '*.sh')
shellcheck -x "${scripts[@]}" || fail "shellcheck found problems"

((rc == 0)) && say "lint: gofmt, go vet, staticcheck and shellcheck found nothing"
exit "$rc"
