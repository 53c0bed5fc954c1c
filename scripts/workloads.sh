# shellcheck shell=bash disable=SC2034 # the table's arrays are read by the scripts that source it
# workloads.sh: what load-test.sh and scripts/bench.sh send to each layer, in one table, and
# the helpers both use. Source it after scripts/lib.sh, from a bash script that runs with
# `set -euo pipefail`.
#
# Every layer answers POST /write {"key","value"} and GET /read/{key} on port 8000+N, except:
#   L8  is exercised through its real endpoints: documents (POST /write/document
#       {"key","data":{...}}, GET /read/document/{key}) for every key-based test, and
#       transactions (POST /write/transaction) as a second write test in load-test.sh;
#   L10 needs an API key (header X-API-Key) on /write and /read: $API_KEY, else the API_KEY=
#       of scripts/stack/l10.sh, else the original's development key, which L10 accepts in
#       development mode (the local stack's default, ENVIRONMENT=development).
# Templates: @KEY@ and @VALUE@ are replaced by the caller's key and value, which may hold
# loadgen placeholders ({n}, {run}, {key:N}: see `loadgen -h`).

# LAYER_NAMES: the original's display names (load-test.sh's banner), by layer number.
LAYER_NAMES=(
	[0]="Single DB"
	[1]="Connection Pooling"
	[2]="Read Cache"
	[3]="Read Replicas"
	[4]="DB Sharding"
	[5]="Multi-Tier Cache"
	[6]="Write Buffering"
	[7]="CQRS"
	[8]="Polyglot Persistence"
	[9]="Global Distributed"
	[10]="Enterprise Grade"
)

# The table: one array per column, indexed by layer number; a layer without an entry uses
# the default.
WL_DEFAULT_WRITE_PATH=/write
WL_DEFAULT_WRITE_BODY='{"key":"@KEY@","value":"@VALUE@"}'
WL_DEFAULT_READ_PATH=/read/@KEY@
WL_WRITE_PATH=([8]=/write/document)
WL_WRITE_BODY=([8]='{"key":"@KEY@","data":{"value":"@VALUE@"}}')
WL_READ_PATH=([8]=/read/document/@KEY@)
# Extra write tests of load-test.sh -t write: "NAME METHOD PATH BODY" (BODY may hold spaces).
WL_EXTRA_WRITE=([8]='write-transaction POST /write/transaction {"user_id":"lt-user-{key:1000}","amount":12.34,"transaction_type":"load-test"}')
# Headers: "api-key" = X-API-Key as above.
WL_AUTH=([10]=api-key)
# Writes applied asynchronously: how to tell from GET /stats that they all were.
WL_DRAIN=([6]=write-queue [7]=projection)
# Environment for `scripts/stack.sh up N` in the benchmark: L10's rate limiter would answer
# 429 to most of a benchmark's requests (that is its job), which would measure the limiter,
# not the layer; the benchmark raises the limit (scripts/stack/l10.sh takes it from the
# environment).
WL_BENCH_ENV=([10]="RATE_LIMIT_REQUESTS=1000000000")
WL_BENCH_ENV_WHY=([10]="so that the rate limiter, which counts per API key, admits every request while still running its check")
# A second path that bench.sh measures as rows of its own (target "LN TX_NAME"): a write and
# a per-user list read. @USER@ is replaced by a user id; bench.sh gives each of WL_TX_USERS
# users one write before it reads their lists.
WL_TX_NAME=([8]=transactions)
WL_TX_WRITE_PATH=([8]=/write/transaction)
WL_TX_WRITE_BODY=([8]='{"user_id":"@USER@","amount":12.34,"transaction_type":"bench"}')
WL_TX_READ_PATH=([8]=/read/transaction/@USER@)
WL_TX_USERS=1000
# What a reader of the benchmark report must know about a layer's numbers.
WL_NOTE=(
	[6]="writes are acknowledged once queued in Redis; the worker applies them to PostgreSQL in the background (the benchmark waits for the queue to drain before each workload)."
	[7]="writes go to the write database's outbox; reads see them once the projector has applied them (the benchmark waits for the projection to catch up before each workload). Every read also updates read_count in the read database."
	[8]="key-based workloads use the document store (POST /write/document, GET /read/document/{key}); its transactions are the rows of \"L8 transactions\"."
	[10]="requests carry X-API-Key (the development key of the local stack)."
)

wl_port() { echo $((8000 + $1)); }

# wl_write_path N / wl_write_body N KEY VALUE / wl_read_path N KEY: the request shapes.
wl_write_path() { echo "${WL_WRITE_PATH[$1]:-$WL_DEFAULT_WRITE_PATH}"; }
wl_write_body() {
	local tpl=${WL_WRITE_BODY[$1]:-$WL_DEFAULT_WRITE_BODY}
	tpl=${tpl//@KEY@/$2}
	echo "${tpl//@VALUE@/$3}"
}
wl_read_path() {
	local tpl=${WL_READ_PATH[$1]:-$WL_DEFAULT_READ_PATH}
	echo "${tpl//@KEY@/$2}"
}

# wl_api_key: the key L10 accepts (see the header).
wl_api_key() {
	local file=$REPO/scripts/stack/l10.sh key=
	if [[ -n ${API_KEY:-} ]]; then
		echo "$API_KEY"
		return 0
	fi
	[[ -r $file ]] && key=$(sed -n 's/.*[[:space:]]API_KEY=\([^[:space:]\\]*\).*/\1/p' "$file" | head -n 1)
	echo "${key:-enterprise-api-key-demo}"
}

# wl_headers N: set WL_HEADERS to the -H arguments (for loadgen, hey and oha) of layer N.
WL_HEADERS=()
wl_headers() {
	WL_HEADERS=()
	if [[ ${WL_AUTH[$1]:-} == api-key ]]; then
		WL_HEADERS=(-H "X-API-Key: $(wl_api_key)")
	fi
	return 0
}

# http_get PORT PATH [HEADER...]: print the body of GET http://127.0.0.1:PORT/PATH, sent with
# these "Name: value" headers (bash /dev/tcp only; fails unless the status is 200).
http_get() {
	local out
	# shellcheck disable=SC2016 # $0, $1 and $@ expand in the inner shell
	out=$(timeout 5 bash -c '
		exec 3<>"/dev/tcp/127.0.0.1/$0" || exit 1
		path=$1
		shift
		{
			printf "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n" "$path"
			for h in "$@"; do printf "%s\r\n" "$h"; done
			printf "\r\n"
		} >&3
		cat <&3' "$@" 2>/dev/null) || return 1
	[[ $out == "HTTP/1."?" 200 "* ]] || return 1
	out=${out#*$'\r\n\r\n'}
	printf '%s\n' "$out"
}

# wl_http_headers N: set WL_HTTP_HEADERS to layer N's headers as "Name: value" (for http_get).
WL_HTTP_HEADERS=()
wl_http_headers() {
	local i
	wl_headers "$1"
	WL_HTTP_HEADERS=()
	for ((i = 1; i < ${#WL_HEADERS[@]}; i += 2)); do
		WL_HTTP_HEADERS+=("${WL_HEADERS[i]}")
	done
}

# wl_drained N: true when layer N has applied every write it acknowledged (always true for
# layers that apply writes before answering).
wl_drained() {
	local stats
	case ${WL_DRAIN[$1]:-} in
	"") return 0 ;;
	write-queue)
		stats=$(http_get "$(wl_port "$1")" /stats) || return 1
		[[ $stats =~ \"queue_length\":0[,}] && $stats =~ \"pending\":0[,}] ]]
		;;
	projection)
		stats=$(http_get "$(wl_port "$1")" /stats) || return 1
		[[ $stats =~ \"projection_lag_events\":0[,}] ]]
		;;
	esac
}

# wl_wait_drained N SECONDS: wait until wl_drained N, at most SECONDS. Says what it waits for.
wl_wait_drained() {
	local n=$1 deadline=$((SECONDS + $2)) started=$SECONDS
	wl_drained "$n" && return 0
	say "L$n: waiting for the ${WL_DRAIN[$n]} to drain (GET /stats, at most $2 s)"
	until wl_drained "$n"; do
		if ((SECONDS >= deadline)); then
			say "L$n: the ${WL_DRAIN[$n]} has not drained after $2 s"
			return 1
		fi
		sleep 0.5
	done
	say "L$n: drained in $((SECONDS - started)) s"
}

# wl_build_tools DIR: build loadgen and loadreport into DIR (quick when nothing changed).
wl_build_tools() {
	command -v go >/dev/null 2>&1 || die "building loadgen needs Go (https://go.dev/dl/)"
	mkdir -p "$1"
	(cd "$REPO" && go build -o "$1/" ./cmd/loadgen ./cmd/loadreport) || die "go build of cmd/loadgen, cmd/loadreport failed"
}
