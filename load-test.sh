#!/usr/bin/env bash
# load-test.sh: load tests against the layers running on this machine (127.0.0.1:8000+N),
# ending with one summary table. Start the layers first, e.g. `scripts/stack.sh up 2`.
#
#   ./load-test.sh [OPTIONS] [LAYER_NUMBER]      LAYER_NUMBER 0…10; none = every layer
#
#   -n NUM    requests per test (request-count mode)      default $REQUESTS, else 1000
#   -c NUM    concurrent clients                          default $CONCURRENCY, else 50
#   -z SECS   seconds per test (duration mode): 30, 30s   default $DURATION, else 10
#             or 2m; at most 10m
#   -t TYPE   write | read | mixed | all                  default all (write, read, mixed)
#   -r RATE   at most RATE requests per second in total,  default $RATE_LIMIT, else 0
#             0 = no limit
#   -h        this help
#
# Mode: -n and -z exclude each other; with neither, DURATION set in the environment selects
# duration mode, else request-count mode with REQUESTS (default 1000).
#
# Tests:
#   write   every request writes a new key (lt-<run>-<n>); L8 also writes transactions
#   read    every request reads one hot key, written just before
#   mixed   70% reads of 1000 keys preloaded just before, 30% new-key writes, at random
# Reads use oha when installed, else hey, else loadgen (override: LOADTEST_TOOL=oha|hey|
# loadgen); writes and mixed runs always use loadgen, which can vary each request's body.
# loadgen and loadreport are built with `go build` into ${DBLAYERS_STACK_DIR:-.stack}/bin.
# L8 is tested through /write/document, /read/document/{key} and /write/transaction; L10
# with X-API-Key: $API_KEY (default: scripts/stack/l10.sh's, else the development key
# enterprise-api-key-demo). A layer whose GET /health does not answer 200 is reported and
# skipped; the others still run.
#
# The layers keep their own access-log settings: for long runs start them with, e.g.,
# ACCESS_LOG_SAMPLE=0.01 (errors and slow requests are always logged; LOAD-TESTING.md).
#
# Exit status: 0 when at least one test ran and every tool ran to completion (whatever the
# answers: a 503 is a measurement), 1 when nothing was tested or a tool failed, 2 on bad usage.
# Only 127.0.0.1 is ever targeted, and every run is bounded in time and count.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=scripts/lib.sh
source "$REPO/scripts/lib.sh"
# shellcheck source-path=SCRIPTDIR source=scripts/workloads.sh
source "$REPO/scripts/workloads.sh"

BIN=${DBLAYERS_STACK_DIR:-$REPO/.stack}/bin
MAX_DURATION=600      # -z bound, seconds (loadgen's own bound is 10m)
MAX_REQUESTS=10000000 # -n bound (loadgen's own bound)
MAX_CONCURRENCY=10000
COUNT_RUN_LIMIT=${LOADTEST_RUN_LIMIT:-900} # seconds any one request-count run may take
MIXED_KEYS=1000                            # keys preloaded for the mixed test

usage() {
	sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}
usage_error() { # the error and the synopsis with the options
	echo "load-test.sh: $*" >&2
	usage | sed -n '4,/-h  /p' >&2
	echo "(./load-test.sh -h for the whole help)" >&2
	exit 2
}

# ---------------------------------------------------------------------------------------------
# Options

requests=${REQUESTS:-1000}
concurrency=${CONCURRENCY:-50}
duration=${DURATION:-10}
rate=${RATE_LIMIT:-0}
test_type=all
mode=count
[[ -n ${DURATION:-} ]] && mode=duration
saw_n=0 saw_z=0

while getopts ":n:c:z:t:r:h" opt; do
	case $opt in
	n) requests=$OPTARG saw_n=1 mode=count ;;
	c) concurrency=$OPTARG ;;
	z) duration=$OPTARG saw_z=1 mode=duration ;;
	t) test_type=$OPTARG ;;
	r) rate=$OPTARG ;;
	h)
		usage
		exit 0
		;;
	:) usage_error "option -$OPTARG needs a value" ;;
	*) usage_error "unknown option -$OPTARG" ;;
	esac
done
shift $((OPTIND - 1))

((saw_n && saw_z)) && usage_error "-n and -z exclude each other: give a request count or a duration"
if ! [[ $requests =~ ^[1-9][0-9]*$ ]] || ((requests > MAX_REQUESTS)); then
	usage_error "-n/REQUESTS '$requests': want a whole number from 1 to $MAX_REQUESTS"
fi
if ! [[ $concurrency =~ ^[1-9][0-9]*$ ]] || ((concurrency > MAX_CONCURRENCY)); then
	usage_error "-c/CONCURRENCY '$concurrency': want a whole number from 1 to $MAX_CONCURRENCY"
fi
if [[ $duration =~ ^([1-9][0-9]*)(s|m)?$ ]]; then
	seconds=${BASH_REMATCH[1]}
	[[ ${BASH_REMATCH[2]} == m ]] && seconds=$((seconds * 60))
	((seconds <= MAX_DURATION)) || usage_error "-z/DURATION '$duration': at most ${MAX_DURATION}s"
else
	usage_error "-z/DURATION '$duration': want seconds, e.g. 30, 30s or 2m"
fi
[[ $rate =~ ^[0-9]+([.][0-9]+)?$ ]] || usage_error "-r/RATE_LIMIT '$rate': want a number of requests per second (0 = no limit)"
case $test_type in
write | read | mixed) tests=("$test_type") ;;
all) tests=(write read mixed) ;;
*) usage_error "-t '$test_type': want write, read, mixed or all" ;;
esac
if [[ $mode == count ]] && ((concurrency > requests)); then
	echo "load-test.sh: $concurrency clients for $requests requests: using $requests clients" >&2
	concurrency=$requests
fi

layers=(0 1 2 3 4 5 6 7 8 9 10)
if (($# > 1)); then
	usage_error "one layer number at most, got: $*"
elif (($# == 1)); then
	[[ $1 =~ ^([0-9]|10)$ ]] || usage_error "invalid layer number '$1': want 0 to 10"
	layers=("$1")
fi

# ---------------------------------------------------------------------------------------------
# Tools

work=$(mktemp -d "${TMPDIR:-/tmp}/load-test.XXXXXX")
# shellcheck disable=SC2317 # reached through the trap
cleanup() { rm -rf "$work"; }
trap cleanup EXIT

if command -v go >/dev/null 2>&1; then
	wl_build_tools "$BIN"
elif [[ ! -x $BIN/loadgen || ! -x $BIN/loadreport ]]; then
	die "no Go to build loadgen, and no $BIN/loadgen: install Go (https://go.dev/dl/)"
fi
LOADGEN=$BIN/loadgen
LOADREPORT=$BIN/loadreport

read_tool=${LOADTEST_TOOL:-auto}
case $read_tool in
auto)
	if command -v oha >/dev/null 2>&1; then
		read_tool=oha
	elif command -v hey >/dev/null 2>&1; then
		read_tool=hey
	else
		read_tool=loadgen
		say "neither oha nor hey is installed (apt-get install hey): reads use loadgen too"
	fi
	;;
oha | hey) command -v "$read_tool" >/dev/null 2>&1 || die "LOADTEST_TOOL=$read_tool, but $read_tool is not installed" ;;
loadgen) ;;
*) die "LOADTEST_TOOL '$read_tool': want oha, hey or loadgen" ;;
esac
oha_json=(--output-format json)
if [[ $read_tool == oha ]] && ! oha --help 2>&1 | grep -q -- --output-format; then
	oha_json=(-j) # older oha, before --output-format
fi

# The bounds of one run: duration mode stops by itself (plus a margin for the last answers
# and the tool's start); request-count mode gets COUNT_RUN_LIMIT seconds.
if [[ $mode == duration ]]; then
	run_limit=$((seconds + 60))
	describe="${seconds}s"
else
	run_limit=$COUNT_RUN_LIMIT
	describe="$requests requests"
fi
describe+=", $concurrency clients"
[[ $rate != 0 ]] && describe+=", at most $rate req/s"

# ---------------------------------------------------------------------------------------------
# Runs and the summary

ROWS=() # one tab-separated row per test: layer, test, tool, then loadreport parse's fields
tested=0 failed=0

add_row() { ROWS+=("$(printf '%s\t' "$@")"); }

# run_tool LAYER TEST TOOL COMMAND...: run one load test, print its result line, add its row.
run_tool() {
	local layer=$1 test=$2 tool=$3 out=$work/out rc=0 line req rps p50 p99 non2xx errs notes
	shift 3
	timeout -s INT -k 10 "$run_limit" "$@" >"$out" 2>"$work/err" || rc=$?
	if ((rc != 0)) || ! line=$("$LOADREPORT" parse -tool "$tool" "$out" 2>>"$work/err"); then
		((rc == 124)) && say "L$layer $test: stopped after ${run_limit}s"
		show_log "$work/err" 5
		say "L$layer $test: $tool failed (exit $rc)"
		add_row "L$layer" "$test" "$tool" - - - - - - "$tool failed (exit $rc)"
		failed=$((failed + 1))
		return 0
	fi
	tested=$((tested + 1))
	IFS=$'\t' read -r req rps p50 p99 non2xx errs notes <<<"$line"
	say "L$layer $test ($tool): $req requests, $rps req/s, p50 $p50 ms, p99 $p99 ms, non-2xx $non2xx, errors $errs"
	add_row "L$layer" "$test" "$tool" "$req" "$rps" "$p50" "$p99" "$non2xx" "$errs" "$notes"
}

# loadgen_args: the arguments every loadgen run shares.
loadgen_args() {
	LG=(run -c "$concurrency" -o json)
	if [[ $mode == duration ]]; then LG+=(-z "${seconds}s"); else LG+=(-n "$requests"); fi
	[[ $rate != 0 ]] && LG+=(-q "$rate")
	LG+=("${WL_HEADERS[@]}")
}

# preload LAYER KEY-TEMPLATE COUNT: write COUNT keys (loadgen templates) before a test; says
# when some were refused, which the test's own numbers will then show.
preload() {
	local n=$1 key=$2 count=$3 port line non2xx errs
	port=$(wl_port "$n")
	if ! timeout -k 10 300 "$LOADGEN" run -c "$((count < 20 ? count : 20))" -n "$count" -o json \
		"${WL_HEADERS[@]}" -d "$(wl_write_body "$n" "$key" "v{n}")" \
		"http://127.0.0.1:$port$(wl_write_path "$n")" >"$work/preload" 2>"$work/err" ||
		! line=$("$LOADREPORT" parse -tool loadgen "$work/preload"); then
		show_log "$work/err" 5
		say "L$n: preload of $count keys failed"
		return 0
	fi
	IFS=$'\t' read -r _ _ _ _ non2xx errs _ <<<"$line"
	((non2xx + errs == 0)) || say "L$n: preload: $non2xx of $count writes refused, $errs unanswered"
	wl_wait_drained "$n" 60 || true
}

test_write() {
	local n=$1 port extra name method path body
	port=$(wl_port "$n")
	loadgen_args
	run_tool "$n" write loadgen "$LOADGEN" "${LG[@]}" \
		-d "$(wl_write_body "$n" "lt-{run}-{n}" "v{n}")" "http://127.0.0.1:$port$(wl_write_path "$n")"
	extra=${WL_EXTRA_WRITE[$n]:-}
	if [[ -n $extra ]]; then
		read -r name method path body <<<"$extra"
		run_tool "$n" "$name" loadgen "$LOADGEN" "${LG[@]}" -m "$method" -d "$body" "http://127.0.0.1:$port$path"
	fi
}

test_read() {
	local n=$1 port url qps
	port=$(wl_port "$n")
	preload "$n" lt-hot 1
	url="http://127.0.0.1:$port$(wl_read_path "$n" lt-hot)"
	case $read_tool in
	oha)
		local args=(--no-tui "${oha_json[@]}" -c "$concurrency")
		if [[ $mode == duration ]]; then args+=(-z "${seconds}s"); else args+=(-n "$requests"); fi
		[[ $rate != 0 ]] && args+=(-q "$rate")
		run_tool "$n" read oha oha "${args[@]}" "${WL_HEADERS[@]}" "$url"
		;;
	hey)
		local args=(-c "$concurrency")
		if [[ $mode == duration ]]; then args+=(-z "${seconds}s"); else args+=(-n "$requests"); fi
		if [[ $rate != 0 ]]; then
			# hey's -q is per client: the total rate divided among the clients.
			qps=$(awk -v r="$rate" -v c="$concurrency" 'BEGIN { printf "%.6f", r / c }')
			args+=(-q "$qps")
		fi
		run_tool "$n" read hey hey "${args[@]}" "${WL_HEADERS[@]}" "$url"
		;;
	loadgen)
		loadgen_args
		run_tool "$n" read loadgen "$LOADGEN" "${LG[@]}" "$url"
		;;
	esac
}

test_mixed() {
	local n=$1 port
	port=$(wl_port "$n")
	preload "$n" "lt-k{n}" "$MIXED_KEYS"
	loadgen_args
	run_tool "$n" mixed loadgen "$LOADGEN" "${LG[@]}" \
		-spec "70 GET http://127.0.0.1:$port$(wl_read_path "$n" "lt-k{key:$MIXED_KEYS}")" \
		-spec "30 POST http://127.0.0.1:$port$(wl_write_path "$n") $(wl_write_body "$n" "lt-{run}-{n}" "v{n}")"
}

print_summary() {
	local fmt='%-5s %-18s %-8s %9s %10s %9s %9s %8s %7s  %s\n' row
	echo
	echo "Summary ($describe; latencies in ms; non-2xx = answers with another status, errors = no answer)"
	# shellcheck disable=SC2059 # the format is the constant above
	printf "$fmt" LAYER TEST TOOL REQUESTS REQ/S P50 P99 NON-2XX ERRORS NOTES
	for row in "${ROWS[@]}"; do
		IFS=$'\t' read -r -a f <<<"$row"
		# shellcheck disable=SC2059
		printf "$fmt" "${f[@]:0:9}" "${f[9]:--}"
	done
}

say "load tests: ${tests[*]} on layer(s) ${layers[*]} ($describe); reads with $read_tool"
for n in "${layers[@]}"; do
	port=$(wl_port "$n")
	echo >&2
	say "L$n ${LAYER_NAMES[n]} — http://127.0.0.1:$port"
	status=$(http_status "$port" /health || true)
	if [[ $status != 200 ]]; then
		why="GET /health answered ${status:-nothing}"
		[[ -z $status ]] && why="nothing listens on port $port"
		if [[ -z $status ]]; then
			say "L$n: skipped: $why (start it with: scripts/stack.sh up $n)"
		else
			say "L$n: skipped: $why (its log: scripts/stack.sh status $n)"
		fi
		add_row "L$n" - - - - - - - - "skipped: $why"
		continue
	fi
	wl_headers "$n"
	for t in "${tests[@]}"; do
		"test_$t" "$n"
	done
done

print_summary
if ((tested == 0 || failed > 0)); then
	exit 1
fi
