#!/usr/bin/env bash
# test.sh: the project's test command. Starts throw-away backing servers, runs the whole Go test
# suite against them with the race detector, and removes everything afterwards.
#
#   scripts/test.sh [GO-TEST-FLAG...] [-- PACKAGE...]
#
#   scripts/test.sh                              go test -race -count=1 -timeout 30m ./...
#   scripts/test.sh -run TestRead -v             extra flags go to go test (a later -timeout wins)
#   scripts/test.sh -- ./docker-compose/...      packages after `--` replace ./...
#   scripts/test.sh --docker -- ./internal/pgstore/   also run the Docker part (below)
#   scripts/test.sh --no-docker                  skip the Docker part
#
# From a fresh Debian machine it installs what is missing (PostgreSQL, Redis, a C compiler for
# -race) with apt-get. The servers run from a `mktemp -d` directory on free ports in 20000-31999,
# bound to 127.0.0.1, so a running dev stack (.stack, ports 5432-5455/6379-6392/8000-8011) is
# never touched; the variables a dev shell may point at it (DATABASE_URL …) reach no test: layers
# under test take their defaults (layertest.Serve) and binaries only what the test gives them
# (testenv.StartProcess). Tests find the servers through:
#
#   DBLAYERS_TEST_PG_URL        superuser URL of the PostgreSQL server (tests create databases)
#   DBLAYERS_TEST_REDIS_URL     redis://127.0.0.1:PORT, 4096 databases, no persistence
#   DBLAYERS_TEST_PG_BIN        PostgreSQL bin directory (fault tests run private clusters)
#   DBLAYERS_TEST_REDIS_SERVER  path of redis-server (fault tests run private servers)
#   DBLAYERS_TEST_MONGO_URL     mongodb://127.0.0.1:PORT/ of a FerretDB (MongoDB wire protocol),
#                               its documents in the database "ferretdb" of that PostgreSQL server
#   DBLAYERS_TEST_FERRETDB      the FerretDB binary (fault tests run private servers, each on a
#                               database of its own there)
#
# The Docker part follows a run of the whole suite (./...), or any run with --docker. What it
# needs first, the compose plugin (built when missing) and the local stand-in images
# (scripts/images.sh), is prepared beside the go test run at the lowest CPU priority
# (lib.sh's docker_prepare), so that it takes only the time go test leaves. Then it runs the
# tests of four packages (container_packages below) with the DBLAYERS_TEST_* variables unset
# and DBLAYERS_TEST_CONTAINERS=1, so that internal/testenv starts their shared servers as
# containers, not from this machine's binaries (testcontainers-go, labelled
# dblayers.testenv=$DBLAYERS_TEST_RUN), and checks that it did; then builds the api image once
# and brings up every docker-compose/lN.yml as its own project on remapped ports and checks it
# (TestComposeUp in docker-compose/up_test.go), removing every container, network and volume it
# made. Both run with -race, so they reuse what go test compiled. Under CI=true it installs
# docker.io, starts dockerd and builds the compose plugin when missing, fails if it gets no
# engine, and fails on any test it skipped; elsewhere it runs when an engine answers and says
# so when it skips.
#
# The last lines say where the time went (setup, go test, lint, each step of the Docker part,
# each compose file's up and checks) and the verdict. Exits with go test's status (the first
# failing part's).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$REPO/scripts/lib.sh"

go_flags=(-race -count=1 -timeout 30m)
packages=(./...)
docker_part=auto
while (($#)); do
	if [[ $1 == -- ]]; then
		shift
		(($#)) && packages=("$@") && [[ $docker_part == auto ]] && docker_part=no
		break
	fi
	case $1 in
	--docker | --no-docker)
		[[ $1 == --docker ]] && docker_part=docker || docker_part=no
		shift
		continue
		;;
	esac
	go_flags+=("$1")
	shift
done

# The packages the Docker part tests against containers: every kind of shared server
# (PostgreSQL, Redis, the MongoDB wire protocol) and private ones that tests stop and start.
# Their tests whose proof does not depend on where the servers run, which the go test run
# has passed already, are not run again (container_skip): the Toxiproxy fault tests
# (layertest's TestGray…, TestHanging…) and the browser tests.
container_packages=(./internal/pgstore ./internal/cache ./layers/l8)
container_skip='^(TestGray|TestHanging|TestDocsInBrowser)'


started=$SECONDS
# Labels the containers internal/testenv starts in this run, so that the exit trap removes
# exactly those.
export DBLAYERS_TEST_RUN="test-sh-$$"
work='' pg_port='' redis_port='' mongo_port=''
gotest_pid='' prep_pid=''
setup_done=0

# shellcheck disable=SC2317 # reached through the traps
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	# Tearing down must not change the verdict: a server slow to stop, or a file still being
	# written while the directory is removed, is reported but is not a test failure.
	set +e
	if [[ -n $gotest_pid ]] && kill -0 "$gotest_pid" 2>/dev/null; then
		say "stopping go test (pid $gotest_pid)"
		kill -TERM -- "-$gotest_pid" 2>/dev/null || true
		wait "$gotest_pid" 2>/dev/null || true
	fi
	if [[ -n $prep_pid ]] && kill -0 "$prep_pid" 2>/dev/null; then
		say "stopping the Docker part's preparation (pid $prep_pid)"
		kill -TERM -- "-$prep_pid" 2>/dev/null || true
		wait "$prep_pid" 2>/dev/null || true
	fi
	if [[ -n $work ]]; then
		if ((!setup_done)); then
			show_log "$work/pg/log/postgresql.log"
			show_log "$work/redis/redis.log"
			show_log "$work/mongo/ferretdb.log"
		fi
		pg_stop "$work/pg" || say "could not stop the test PostgreSQL cleanly"
		redis_stop "$work/redis" || say "could not stop the test Redis cleanly"
		ferretdb_stop "$work/mongo" || say "could not stop the test FerretDB cleanly"
		rm -rf "$work" 2>/dev/null || rm -rf "$work" || say "could not remove $work"
	fi
	compose_cleanup
	testenv_cleanup
	exit "$rc"
}
# compose_cleanup: remove what a Docker part left (containers, networks, volumes of the
# dblayers-test-lN projects), whatever stopped it.
# shellcheck disable=SC2317
compose_cleanup() {
	local project
	((compose_started)) || return 0
	for project in $(docker ps -a --format '{{.Label "com.docker.compose.project"}}' | grep '^dblayers-test-l' | sort -u); do
		say "removing leftover compose project $project"
		docker compose --project-name "$project" down -v --remove-orphans --timeout 10 >/dev/null 2>&1 ||
			say "could not remove $project"
	done
}
compose_started=0

# testenv_cleanup: remove the containers internal/testenv started in this run and left (each
# test binary's watcher removes its own once the binary exits; this covers a killed watcher).
# shellcheck disable=SC2317
testenv_cleanup() {
	local ids
	command -v docker >/dev/null 2>&1 || return 0
	ids=$(docker ps -aq --filter "label=dblayers.testenv=$DBLAYERS_TEST_RUN" 2>/dev/null) || return 0
	[[ -z $ids ]] && return 0
	say "removing leftover testenv containers: $(echo "$ids" | tr '\n' ' ')"
	# shellcheck disable=SC2086 # one id a word
	docker rm -fv $ids >/dev/null 2>&1 || say "could not remove them"
}

# logged show|quiet LOG COMMAND...: run COMMAND in its own process group, so that an interrupt
# can stop it and its test binaries at once (the trap above; a background job plus `wait` lets
# that trap run at once), its output kept in LOG and, with show, on the terminal too.
logged() {
	local mode=$1 log=$2 status=0 i
	shift 2
	if [[ $mode == show ]]; then
		exec {out_fd}> >(tee "$log")
	else
		exec {out_fd}> >(cat >"$log")
	fi
	tee_pid=$!
	setsid "$@" >&"$out_fd" 2>&1 &
	gotest_pid=$!
	wait "$gotest_pid" || status=$?
	gotest_pid=
	exec {out_fd}>&-
	# The reader ends when every writer has closed the pipe; a server the command left running
	# would keep it open for ever, so it gets 10 s.
	for ((i = 0; i < 100; i++)); do
		kill -0 "$tee_pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$tee_pid" 2>/dev/null; then
		say "a process the command started still holds its output open 10 s after it ended: not waiting for it"
		kill "$tee_pid" 2>/dev/null || true
	fi
	wait "$tee_pid" 2>/dev/null || true
	return "$status"
}

# skipped_tests LOG: print the tests LOG (go test -v output) reports skipped, one a line.
skipped_tests() {
	grep -E '^\s*--- SKIP: ' "$1" | sed 's/^ */    /' || true
}

trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

command -v go >/dev/null 2>&1 || die "the tests need Go (https://go.dev/dl/)"

# Whether the Docker part runs is settled first: its preparation starts before go test.
if [[ $docker_part == auto && ${CI:-} == true ]]; then
	docker_part=docker
elif [[ $docker_part == auto ]]; then
	if docker info >/dev/null 2>&1; then
		docker_part=docker
	else
		say "Docker part skipped: no Docker engine answers (--docker starts one)"
	fi
elif [[ $docker_part == no ]]; then
	say "Docker part skipped (a package list or --no-docker)"
fi

# Every Debian package of the run in one apt-get, before anything runs beside it (apt-get
# takes a lock).
tools=(postgres redis cc chromium)
[[ ${packages[*]} != ./... ]] || tools+=(shellcheck)
[[ $docker_part != docker ]] || tools+=(docker debootstrap)
ensure_packages "${tools[@]}"

work=$(mktemp -d "${TMPDIR:-/tmp}/dblayers-test.XXXXXX")
chmod 755 "$work" # the postgres OS user must reach the cluster inside

# Without an engine the Docker part fails, after go test has run all the same.
engine_secs=0 docker_rc=0
if [[ $docker_part == docker ]]; then
	engine_started=$SECONDS
	(docker_engine) || docker_rc=$?
	engine_secs=$((SECONDS - engine_started))
fi
if [[ $docker_part == docker ]] && ((docker_rc == 0)); then
	say "preparing the Docker part beside go test (compose plugin, scripts/images.sh; log $work/docker-prep.log)"
	# shellcheck disable=SC2016 # $1 expands in the inner shell
	setsid bash -c 'set -euo pipefail; source "$1/scripts/lib.sh"; lowest_priority; docker_prepare "$@"' _ \
		"$REPO" "$work/images.env" "$work/docker-prep.times" >"$work/docker-prep.log" 2>&1 </dev/null &
	prep_pid=$!
fi

# A throw-away cluster with the settings of every test PostgreSQL, which internal/testenv reads
# too: no durability, and passwords checked with what its password_encryption says (md5).
pg_conf="$REPO/internal/testenv/postgresql.conf"
free_port pg_port
DBL_PG_HOST_AUTH=$(sed -n 's/^password_encryption = //p' "$pg_conf") DBL_PG_SETTINGS=$(<"$pg_conf") \
	pg_init_start test-pg "$pg_port" "$work/pg" ferretdb

free_port redis_port
redis_start test-redis "$redis_port" "$work/redis" --databases 4096 --save "" --appendonly no

# The MongoDB-compatible server: FerretDB from tools/ferretdb (its own Go module; MongoDB itself
# is not in Debian), on the database "ferretdb" of the test cluster. Tests that stop the document
# store stop a private FerretDB (testenv.StartMongo), never this cluster.
ferretdb_build "$REPO" "$work/bin/ferretdb"
free_port mongo_port
ferretdb_start test-ferretdb "$mongo_port" "$work/mongo" "$work/bin/ferretdb" \
	"postgres://$DBL_PG_USER:$DBL_PG_PASSWORD@127.0.0.1:$pg_port/ferretdb?sslmode=disable"

export DBLAYERS_TEST_PG_URL="postgres://$DBL_PG_USER:$DBL_PG_PASSWORD@127.0.0.1:$pg_port/postgres?sslmode=disable"
export DBLAYERS_TEST_REDIS_URL="redis://127.0.0.1:$redis_port"
export DBLAYERS_TEST_MONGO_URL="mongodb://127.0.0.1:$mongo_port/"
export DBLAYERS_TEST_FERRETDB="$work/bin/ferretdb"
DBLAYERS_TEST_PG_BIN=$(pg_bindir)
DBLAYERS_TEST_REDIS_SERVER=$(command -v redis-server)
export DBLAYERS_TEST_PG_BIN DBLAYERS_TEST_REDIS_SERVER

setup_done=1
setup_secs=$((SECONDS - started))
say "servers ready in ${setup_secs}s: PostgreSQL 127.0.0.1:$pg_port, Redis 127.0.0.1:$redis_port," \
	"FerretDB 127.0.0.1:$mongo_port ($work)"

say "go test ${go_flags[*]} ${packages[*]}"
cd "$REPO"
rc=0
gotest_started=$SECONDS
logged show "$work/go-test.log" go test "${go_flags[@]}" "${packages[@]}" || rc=$?
gotest_secs=$((SECONDS - gotest_started))
# From here on the Docker part waits for its preparation: back to normal priority.
[[ -z $prep_pid ]] || normal_priority "$prep_pid"

# The linters (gofmt, go vet, staticcheck, ShellCheck), with a run of the whole suite.
lint_secs=0
if [[ ${packages[*]} == ./... ]]; then
	lint_started=$SECONDS
	say "scripts/lint.sh"
	lint_rc=0
	bash "$REPO/scripts/lint.sh" || lint_rc=$?
	lint_secs=$((SECONDS - lint_started))
	((rc != 0)) || rc=$lint_rc
fi

# The Docker part: wait for its preparation, run the tests against containers, then the
# compose checks. Its go test runs take -race, as the run above did, so that they link what
# that run compiled instead of compiling every package again.
docker_secs=0 containers_secs=0 compose_secs=0 prep_wait_secs=0 compose_plugin_secs=0 images_secs=0
docker_started=$SECONDS
if [[ -n $prep_pid ]]; then
	say "waiting for the Docker part's preparation"
	wait "$prep_pid" || docker_rc=$?
	prep_pid=
	prep_wait_secs=$((SECONDS - docker_started))
	grep -E '^\[' "$work/docker-prep.log" | sed 's/^/    /' >&2 || true
	if ((docker_rc != 0)); then
		show_log "$work/docker-prep.log" 40
		say "the Docker part's preparation failed (exit $docker_rc)"
	fi
	# shellcheck source=/dev/null # written by docker_prepare
	[[ ! -s $work/docker-prep.times ]] || source "$work/docker-prep.times"
fi
if [[ $docker_part == docker ]] && ((docker_rc == 0)); then
	# shellcheck source=/dev/null # scripts/images.sh's variables
	source "$work/images.env"

	containers_started=$SECONDS
	containers_since=$(date +%s)
	say "go test -race -count=1 -v -skip '$container_skip' ${container_packages[*]}, servers from containers"
	logged quiet "$work/containers-test.log" env -u DBLAYERS_TEST_PG_URL -u DBLAYERS_TEST_REDIS_URL \
		-u DBLAYERS_TEST_MONGO_URL -u DBLAYERS_TEST_PG_BIN -u DBLAYERS_TEST_REDIS_SERVER -u DBLAYERS_TEST_FERRETDB \
		DBLAYERS_TEST_CONTAINERS=1 go test -race -count=1 -timeout 30m -v -skip "$container_skip" "${container_packages[@]}" || docker_rc=$?
	if ((docker_rc == 0)); then
		grep -E '^(ok|\s*--- SKIP|testenv: )' "$work/containers-test.log" | sed 's/^ */    /' >&2 || true
	else
		cat "$work/containers-test.log" >&2
	fi
	# The proof that the servers were containers: each kind said so, and the engine created
	# containers with this run's label.
	for kind in PostgreSQL Redis MongoDB; do
		grep -q "^testenv: $kind from container " "$work/containers-test.log" ||
			{ say "no test got its $kind from a container"; ((docker_rc != 0)) || docker_rc=1; }
	done
	created=$(docker events --since "$containers_since" --until "$(date +%s)" \
		--filter "label=dblayers.testenv=$DBLAYERS_TEST_RUN" --filter event=create --format '{{.ID}}' | wc -l) || created=0
	containers_secs=$((SECONDS - containers_started))
	say "tests against containers: $created containers created, ${containers_secs}s"
	((created > 0)) || { ((docker_rc != 0)) || docker_rc=1; }
	cat "$work/containers-test.log" >>"$work/go-test.log"

	say "go test -race -count=1 -timeout 60m -run TestComposeUp -v ./docker-compose/"
	compose_started=1
	compose_rc=0
	compose_began=$SECONDS
	logged show "$work/compose-test.log" \
		env DBLAYERS_TEST_COMPOSE=1 go test -race -count=1 -timeout 60m -run TestComposeUp -v ./docker-compose/ || compose_rc=$?
	compose_secs=$((SECONDS - compose_began))
	((docker_rc != 0)) || docker_rc=$compose_rc
	cat "$work/compose-test.log" >>"$work/go-test.log"

	# Under CI=true every test of the Docker part must have run: a skip there means something
	# the part exists to prove was not proven.
	skips=$(
		skipped_tests "$work/containers-test.log"
		skipped_tests "$work/compose-test.log"
	)
	if [[ -n $skips && ${CI:-} == true ]]; then
		say "CI=true and the Docker part skipped tests:"
		echo "$skips" >&2
		((docker_rc != 0)) || docker_rc=1
	fi
fi
if [[ $docker_part == docker ]]; then
	docker_secs=$((SECONDS - docker_started))
	say "Docker part: $( ((docker_rc == 0)) && echo PASS || echo FAIL) (exit $docker_rc)"
	((rc != 0)) || rc=$docker_rc
fi

ok=$(grep -c '^ok ' "$work/go-test.log" || true)
failed=$(grep -cE '^FAIL[[:space:]]' "$work/go-test.log" || true)
notests=$(grep -c '^? ' "$work/go-test.log" || true)
failed_tests=$(grep -c -- '--- FAIL:' "$work/go-test.log" || true)
verdict=PASS
((rc == 0)) || verdict=FAIL
echo "test.sh: where the time went: setup ${setup_secs}s, go test ${gotest_secs}s, lint ${lint_secs}s"
if [[ $docker_part == docker ]]; then
	echo "    Docker part ${docker_secs}s after them: engine ${engine_secs}s (part of the setup);" \
		"beside it the compose plugin ${compose_plugin_secs}s and scripts/images.sh ${images_secs}s," \
		"waited for ${prep_wait_secs}s; tests against containers ${containers_secs}s; compose checks ${compose_secs}s"
	[[ ! -s $work/compose-test.log ]] ||
		grep -oE 'up_test.go:[0-9]+: (api image: built .*|l[0-9]+: up .*)' "$work/compose-test.log" |
		sed 's/^up_test.go:[0-9]*: /        /' || true
fi
echo "test.sh: $verdict (go test exit $rc): packages ok $ok, failed $failed, without tests $notests;" \
	"failed tests $failed_tests; total $((SECONDS - started))s"
exit "$rc"
