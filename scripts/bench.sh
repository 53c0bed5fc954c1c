#!/usr/bin/env bash
# bench.sh: the benchmark command. Measures every layer under the same four workloads, beside
# the trivial-handler ceiling measured at the start and the end of the same run, and writes
# BENCHMARKS.md and its chart.
#
#   scripts/bench.sh [-z DURATION] [-c CLIENTS] [-w WARMUP] [-k KEYS] [-o REPORT] [-g CHART]
#                    [LAYER...|all]
#
#   -z DURATION  measured time per workload, e.g. 10s or 1m          default 10s
#   -c CLIENTS   concurrent clients                                  default 50
#   -w WARMUP    unmeasured load before each measurement             default 2s
#   -k KEYS      keys preloaded for the uniform reads                default 100000
#   -o REPORT    the report to write                                 default BENCHMARKS.md
#   -g CHART     the chart to write (SVG); the raw results go beside  default docs/benchmarks.svg
#                it as .jsonl (`loadreport report` redoes the report from them)
#   LAYER...     layer numbers; default all: every scripts/stack/lN.sh
#
# Workloads (all sent by loadgen, to 127.0.0.1 only):
#   hot-read      GET one key, written before the run
#   uniform-read  GET a key drawn uniformly from the KEYS keys k0…k(KEYS-1) preloaded before
#   write         write a key never written before, every request
#   mixed         70% uniform reads, 30% new-key writes, at random
# Layer-specific request shapes (L8 documents, L10 API key) come from scripts/workloads.sh. A
# layer with a second path there (L8's transactions) gets rows of their own for it, target
# "L8 transactions": uniform-read (a user's list), write and mixed, over WL_TX_USERS users.
#
# One layer at a time: `scripts/stack.sh up N`, preload, a wait for a quiet machine (settle),
# the four workloads, `scripts/stack.sh down N`, then the next layer. The preload is skipped
# when the layer's data already holds it (a marker key written after a complete preload). A
# layer that was already running when the benchmark started is measured as found and left
# running (the report says so). Every step is bounded in time; a layer that fails to come up is
# reported as not measured and the run goes on. Paths are relative to the repository root. The
# run's total time is printed at the end and written into the report. Loopback only.
#
# The layers it brings up log every error and every request of ACCESS_LOG_SLOW (default 1s) or
# more, and a share ACCESS_LOG_SAMPLE (default 0.01) of the rest: a line per request would cost
# CPU and disk the measurement should not include (LOAD-TESTING.md, "What the access log keeps").
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$REPO/scripts/lib.sh"
# shellcheck source-path=SCRIPTDIR source=workloads.sh
source "$REPO/scripts/workloads.sh"

STACK_DIR=${DBLAYERS_STACK_DIR:-$REPO/.stack}
BIN=$STACK_DIR/bin
UP_LIMIT=900      # seconds for `stack.sh up N` (it may install packages and build)
DOWN_LIMIT=300    # seconds for `stack.sh down N`
PRELOAD_LIMIT=3600 # seconds for the preload of KEYS keys
DRAIN_LIMIT=600   # seconds for L6's queue / L7's projection to catch up
SETTLE_LIMIT=180  # seconds to wait for a quiet machine before a layer's workloads
SETTLE_BUSY=10    # "quiet": at most this share (%) of the CPUs busy over 2 s
export ACCESS_LOG_SAMPLE=${ACCESS_LOG_SAMPLE:-0.01} ACCESS_LOG_SLOW=${ACCESS_LOG_SLOW:-1s}

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }
usage_error() {
	echo "bench.sh: $*" >&2
	usage | sed -n '4,/-g CHART/p' >&2
	exit 2
}

# to_seconds D: whole seconds of a duration like 10s or 2m (validated by the caller).
to_seconds() {
	local v=${1%[sm]}
	[[ $1 == *m ]] && v=$((v * 60))
	echo "$v"
}

duration=10s clients=50 warmup=2s keys=100000 report=BENCHMARKS.md chart=docs/benchmarks.svg
command_line="scripts/bench.sh"
for arg in "$@"; do command_line+=" $(printf '%q' "$arg")"; done
while getopts ":z:c:w:k:o:g:h" opt; do
	case $opt in
	z) duration=$OPTARG ;;
	c) clients=$OPTARG ;;
	w) warmup=$OPTARG ;;
	k) keys=$OPTARG ;;
	o) report=$OPTARG ;;
	g) chart=$OPTARG ;;
	h)
		usage
		exit 0
		;;
	:) usage_error "option -$OPTARG needs a value" ;;
	*) usage_error "unknown option -$OPTARG" ;;
	esac
done
shift $((OPTIND - 1))
if ! [[ $duration =~ ^[1-9][0-9]*[sm]$ ]] || (($(to_seconds "$duration") > 600)); then
	usage_error "-z '$duration': want e.g. 10s or 1m, at most 10m"
fi
if ! [[ $warmup =~ ^[0-9]+[sm]$ ]] || (($(to_seconds "$warmup") > 60)); then
	usage_error "-w '$warmup': want e.g. 2s or 0s, at most 1m"
fi
if ! [[ $clients =~ ^[1-9][0-9]*$ ]] || ((clients > 1000)); then
	usage_error "-c '$clients': want 1 to 1000"
fi
if ! [[ $keys =~ ^[1-9][0-9]*$ ]] || ((keys > 1000000)); then
	usage_error "-k '$keys': want 1 to 1000000"
fi
[[ $report == *.md ]] || usage_error "-o '$report': want a .md file"
[[ $chart == *.svg ]] || usage_error "-g '$chart': want a .svg file"

# The layers: those with a stack file, or the ones named.
available=()
for file in "$REPO"/scripts/stack/l*.sh; do
	n=${file##*/l}
	n=${n%.sh}
	[[ $n =~ ^[0-9]+$ ]] && available+=("$n")
done
mapfile -t available < <(printf '%s\n' "${available[@]}" | sort -n)
layers=()
if (($# == 0)) || [[ $* == all ]]; then
	layers=("${available[@]}")
else
	for n in "$@"; do
		[[ " ${available[*]} " == *" $n "* ]] || usage_error "no layer '$n' in scripts/stack/ (layers: ${available[*]})"
		layers+=("$n")
	done
fi

cd "$REPO"
[[ $report == /* ]] || report=$REPO/$report
[[ $chart == /* ]] || chart=$REPO/$chart
chart_link=$(realpath -m --relative-to="$(dirname "$report")" "$chart")

started=$SECONDS
started_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
load_start=$(cut -d ' ' -f 1-3 /proc/loadavg 2>/dev/null || true)
# cpu_times: "steal total" of /proc/stat's cpu line (user … steal; guest time is inside user).
cpu_times() { awk '/^cpu /{t = 0; for (i = 2; i <= 9; i++) t += $i; print $9, t}' /proc/stat 2>/dev/null || true; }
cpu_start=$(cpu_times)

# settle: wait, at most SETTLE_LIMIT s, until the machine is quiet (at most SETTLE_BUSY % of
# its CPU time busy over 2 s; cpu_busy gives busy and total jiffies), and print the seconds
# waited: work still running when a layer's workloads begin (its databases' after a preload,
# or anything else on the machine) would otherwise share the CPUs with the measurement.
cpu_busy() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat; }
settle() {
	local t0=$SECONDS a b
	while ((SECONDS - t0 < SETTLE_LIMIT)); do
		a=$(cpu_busy)
		sleep 2
		b=$(cpu_busy)
		awk -v a="$a" -v b="$b" -v limit="$SETTLE_BUSY" 'BEGIN { split(a, x, " "); split(b, y, " ")
			exit !(y[2] > x[2] && 100 * (y[1] - x[1]) <= limit * (y[2] - x[2])) }' && break
	done
	echo $((SECONDS - t0))
}
duration_s=$(to_seconds "$duration")
run_limit=$((duration_s + $(to_seconds "$warmup") + 60)) # one workload, with margin

work=$(mktemp -d "${TMPDIR:-/tmp}/bench.XXXXXX")
results=$work/results.jsonl
ceiling_dir=$work/ceiling
brought_up= # the layer this script started and must bring down again
# shellcheck disable=SC2317 # reached through the traps
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	proc_stop "$ceiling_dir/ceiling.pid" 10
	if [[ -n $brought_up ]]; then
		say "bringing L$brought_up down"
		timeout "$DOWN_LIMIT" "$REPO/scripts/stack.sh" down "$brought_up" >/dev/null 2>&1 || true
	fi
	rm -rf "$work"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

wl_build_tools "$BIN"
LOADGEN=$BIN/loadgen
LOADREPORT=$BIN/loadreport

# Layers running before the benchmark started (measured as found, left running).
already=()
for n in 0 1 2 3 4 5 6 7 8 9 10; do
	port_in_use "$(wl_port "$n")" && already+=("$n")
done
others=
if ((${#already[@]})); then
	others="layers already running when the benchmark started ran beside every measurement:"
	for n in "${already[@]}"; do others+=" L$n"; done
	others+=" (those this run measures are measured as found and left running)"
	say "warning: $others"
fi

say "benchmark: layers ${layers[*]}; $duration per workload after $warmup warm-up, $clients clients, $keys preloaded keys"

# ---------------------------------------------------------------------------------------------
# Measuring

# interrupted FILE: whether loadgen's JSON result FILE says it was stopped early (the time
# limit's SIGINT): it still reports what it sent, which is then neither a measurement nor a
# finished preload.
interrupted() { grep -q '"interrupted": *true' "$1"; }

# measure TARGET NAME WORKLOAD SHAPE NOTE LOADGEN-RUN-ARG...: one workload, recorded.
measure() {
	local target=$1 name=$2 workload=$3 shape=$4 note=$5 out=$work/run.json rc=0 rps p50 p99 non2xx errs
	shift 5
	say "$target $workload: $shape"
	timeout -s INT -k 10 "$run_limit" "$LOADGEN" run -c "$clients" -z "$duration" -warmup "$warmup" \
		-o json "$@" >"$out" 2>"$work/err" || rc=$?
	if ((rc != 0)); then
		show_log "$work/err" 5
		record "$target" "$name" "$workload" "$shape" "$note" -skipped "loadgen failed (exit $rc)"
		return 0
	fi
	if interrupted "$out"; then
		record "$target" "$name" "$workload" "$shape" "$note" -skipped "stopped after $run_limit s (time limit)"
		return 0
	fi
	record "$target" "$name" "$workload" "$shape" "$note" -tool loadgen "$out"
	IFS=$'\t' read -r _ rps p50 p99 non2xx errs _ < <("$LOADREPORT" parse -tool loadgen "$out")
	say "$target $workload: $rps req/s, p50 $p50 ms, p99 $p99 ms, non-2xx $non2xx, errors $errs"
}

# record TARGET NAME WORKLOAD SHAPE NOTE (-skipped REASON | -tool loadgen FILE)
record() {
	local args=(-results "$results" -target "$1" -workload "$3" -shape "$4")
	[[ -n $2 ]] && args+=(-name "$2")
	[[ -n $5 ]] && args+=(-note "$5")
	"$LOADREPORT" record "${args[@]}" "${@:6}"
}

# workloads TARGET NAME NOTE PORT READ-PATH(KEY) WRITE-PATH WRITE-BODY(KEY,VALUE) [DRAIN-LAYER]:
# the four workloads against one target. Paths and bodies hold @KEY@/@VALUE@ (workloads.sh).
workloads() {
	local target=$1 name=$2 note=$3 base=http://127.0.0.1:$4 read=$5 wpath=$6 wbody=$7 drain=${8:-}
	local ukey="k{key:$keys}" wkey="lg-{run}-{n}" wvalue="v{n}" hot uniform body
	hot=${read//@KEY@/hot}
	uniform=${read//@KEY@/"$ukey"}
	body=${wbody//@KEY@/"$wkey"}
	body=${body//@VALUE@/"$wvalue"}
	measure "$target" "$name" hot-read "GET $hot" "$note" "${WL_HEADERS[@]}" "$base$hot"
	measure "$target" "$name" uniform-read "GET $uniform" "$note" "${WL_HEADERS[@]}" "$base$uniform"
	measure "$target" "$name" write "POST $wpath" "$note" "${WL_HEADERS[@]}" -d "$body" "$base$wpath"
	[[ -z $drain ]] || wl_wait_drained "$drain" "$DRAIN_LIMIT" || true
	measure "$target" "$name" mixed "70 GET $uniform + 30 POST $wpath" "$note" "${WL_HEADERS[@]}" \
		-spec "70 GET $base$uniform" -spec "30 POST $base$wpath $body"
	[[ -z $drain ]] || wl_wait_drained "$drain" "$DRAIN_LIMIT" || true
}

# second_path N: layer N's second path (WL_TX_* in workloads.sh, e.g. L8's transactions) as
# rows of its own, target "LN <path>": each of WL_TX_USERS users gets one write, then the list
# read of a user drawn uniformly from them, a write for such a user (a new entry in its list),
# and the 70/30 mix of both, which makes reads see lists that writes have just changed.
second_path() {
	local n=$1 base target users=$WL_TX_USERS user wpath body first read rc=0 note
	base=http://127.0.0.1:$(wl_port "$n")
	target="L$n ${WL_TX_NAME[n]}"
	user="bench-u{key:$users}"
	wpath=${WL_TX_WRITE_PATH[n]}
	body=${WL_TX_WRITE_BODY[n]//@USER@/"$user"}
	first=${WL_TX_WRITE_BODY[n]//@USER@/"bench-u{n}"}
	read=${WL_TX_READ_PATH[n]//@USER@/"$user"}
	note="${WL_TX_NAME[n]}: POST $wpath and GET ${WL_TX_READ_PATH[n]//@USER@/"{user}"} over $users users (bench-u0 … bench-u$((users - 1))), each given one write first; the uniform-read row reads their lists, not the preloaded keys."
	say "$target: one write for each of $users users"
	"$LOADGEN" run -c "$clients" -n "$users" -o json "${WL_HEADERS[@]}" -d "$first" \
		"$base$wpath" >"$work/users.json" 2>"$work/err" || rc=$?
	if ((rc != 0)) || ! "$LOADREPORT" parse -tool loadgen "$work/users.json" >/dev/null; then
		show_log "$work/err" 5
		note+=" Writing the users' first entries failed (loadgen exit $rc): some list reads may answer 404."
	fi
	measure "$target" "" uniform-read "GET $read" "$note" "${WL_HEADERS[@]}" "$base$read"
	measure "$target" "" write "POST $wpath" "$note" "${WL_HEADERS[@]}" -d "$body" "$base$wpath"
	measure "$target" "" mixed "70 GET $read + 30 POST $wpath" "$note" "${WL_HEADERS[@]}" \
		-spec "70 GET $base$read" -spec "30 POST $base$wpath $body"
}

not_measured() { # TARGET NAME NOTE REASON
	local wl
	for wl in hot-read uniform-read write mixed; do
		record "$1" "$2" "$wl" "" "$3" -skipped "$4"
	done
}

# preload N KEYS: the hot key and KEYS keys, unless the marker says an earlier run loaded them.
# Prints a note for the report: how long it took, that it was skipped, or that it is incomplete.
preload() {
	local n=$1 keys=$2 port base marker line non2xx errs attempt rc t0=$SECONDS
	marker=bench-preload-$keys
	port=$(wl_port "$n")
	base=http://127.0.0.1:$port
	"$LOADGEN" run -c 1 -n 1 -o json "${WL_HEADERS[@]}" -d "$(wl_write_body "$n" hot hot-value)" \
		"$base$(wl_write_path "$n")" >/dev/null 2>&1 || say "L$n: writing the hot key failed"
	wl_http_headers "$n"
	line=$(http_get "$port" "$(wl_read_path "$n" "$marker")" "${WL_HTTP_HEADERS[@]}" 2>/dev/null) || line=
	if [[ $line == *'"success":true'* ]]; then
		say "L$n: the $keys keys are there from an earlier run (marker $marker): no preload"
		wl_wait_drained "$n" "$DRAIN_LIMIT" >&2 || true
		echo "Preload skipped: the keys of an earlier run were there (marker key $marker)."
		return 0
	fi
	for attempt in 1 2; do
		say "L$n: preloading $keys keys (k0 … k$((keys - 1))), attempt $attempt"
		rc=0
		timeout -s INT -k 10 "$PRELOAD_LIMIT" "$LOADGEN" run -c "$clients" -n "$keys" -o json \
			"${WL_HEADERS[@]}" -d "$(wl_write_body "$n" "k{n}" "v{n}")" "$base$(wl_write_path "$n")" \
			>"$work/preload.json" 2>"$work/err" || rc=$?
		wl_wait_drained "$n" "$DRAIN_LIMIT" >&2 || true
		if ((rc != 0)) || interrupted "$work/preload.json" ||
			! line=$("$LOADREPORT" parse -tool loadgen "$work/preload.json"); then
			show_log "$work/err" 5
			say "L$n: preload stopped (loadgen exit $rc; $PRELOAD_LIMIT s at most)"
			break
		fi
		IFS=$'\t' read -r _ _ _ _ non2xx errs _ <<<"$line"
		if ((non2xx + errs == 0)); then
			"$LOADGEN" run -c 1 -n 1 -o json "${WL_HEADERS[@]}" -d "$(wl_write_body "$n" "$marker" "done")" \
				"$base$(wl_write_path "$n")" >/dev/null 2>&1 || true
			wl_wait_drained "$n" "$DRAIN_LIMIT" >&2 || true
			say "L$n: preloaded in $((SECONDS - t0)) s"
			echo "Preloaded $keys keys in $((SECONDS - t0)) s."
			return 0
		fi
		say "L$n: preload: $non2xx writes refused, $errs unanswered; writing them all again"
	done
	echo "Preload incomplete: some of the $keys keys may be missing (their reads answer 200 \"Key not found\")."
}

# measure_ceiling TARGET: loadgen's trivial handler on a free port, the same workloads.
measure_ceiling() {
	local port=
	free_port port
	proc_start "$ceiling_dir" "$ceiling_dir/ceiling.pid" "$ceiling_dir/ceiling.log" \
		"$LOADGEN" ceiling -addr "127.0.0.1:$port"
	wait_for_port "$port" 10 "$ceiling_dir/ceiling.pid" || die "the ceiling server did not start"
	WL_HEADERS=()
	workloads "$1" "" "loadgen ceiling: answers every request at once with 200 and a fixed JSON body shaped like a layer's read answer; measured at the start and at the end of the run." \
		"$port" "$WL_DEFAULT_READ_PATH" "$WL_DEFAULT_WRITE_PATH" "$WL_DEFAULT_WRITE_BODY"
	proc_stop "$ceiling_dir/ceiling.pid" 10
}

measure_ceiling "ceiling (start)"

for n in "${layers[@]}"; do
	t0=$SECONDS
	name=${LAYER_NAMES[n]}
	note=${WL_NOTE[n]:-}
	port=$(wl_port "$n")
	say "L$n $name: http://127.0.0.1:$port"
	if [[ " ${already[*]} " == *" $n "* ]]; then
		say "L$n was running before the benchmark: measuring it as found"
		note+=" Already running when the benchmark started: measured as found, with its own settings."
		[[ -n ${WL_BENCH_ENV[n]:-} ]] && note+=" (The benchmark would have started it with ${WL_BENCH_ENV[n]}, ${WL_BENCH_ENV_WHY[n]}.)"
	else
		[[ -n ${WL_BENCH_ENV[n]:-} ]] && note+=" Brought up with ${WL_BENCH_ENV[n]}, ${WL_BENCH_ENV_WHY[n]}."
		read -r -a env_args <<<"${WL_BENCH_ENV[n]:-}"
		brought_up=$n
		if ! timeout "$UP_LIMIT" env "${env_args[@]}" "$REPO/scripts/stack.sh" up "$n" >"$work/up.log" 2>&1; then
			show_log "$work/up.log" 15
			say "L$n: scripts/stack.sh up $n failed: not measured"
			not_measured "L$n" "$name" "${note# }" "scripts/stack.sh up $n failed"
			timeout "$DOWN_LIMIT" "$REPO/scripts/stack.sh" down "$n" >/dev/null 2>&1 || true
			brought_up=
			continue
		fi
	fi
	status=$(http_status "$port" /health || true)
	if [[ $status != 200 ]]; then
		say "L$n: GET /health answered ${status:-nothing}: not measured"
		not_measured "L$n" "$name" "${note# }" "GET /health answered ${status:-nothing}"
	else
		wl_headers "$n"
		preload_note=$(preload "$n" "$keys")
		[[ -n $preload_note ]] && note+=" $preload_note"
		waited=$(settle)
		if ((waited >= SETTLE_LIMIT)); then
			say "L$n: the machine was still busy after $waited s; measuring anyway"
			note+=" The machine was still busy (over ${SETTLE_BUSY}% of its CPU) after a wait of ${waited} s before the workloads."
		elif ((waited > 2)); then
			say "L$n: the machine was quiet after $waited s"
			note+=" Waited ${waited} s before the workloads for the machine to be quiet."
		fi
		note=${note# }
		drain=
		[[ -n ${WL_DRAIN[n]:-} ]] && drain=$n
		workloads "L$n" "$name" "$note" "$port" "$(wl_read_path "$n" @KEY@)" "$(wl_write_path "$n")" \
			"${WL_WRITE_BODY[n]:-$WL_DEFAULT_WRITE_BODY}" "$drain"
		[[ -z ${WL_TX_NAME[n]:-} ]] || second_path "$n"
	fi
	if [[ -n $brought_up ]]; then
		timeout "$DOWN_LIMIT" "$REPO/scripts/stack.sh" down "$n" >"$work/down.log" 2>&1 ||
			{ show_log "$work/down.log"; say "L$n: scripts/stack.sh down $n failed"; }
		brought_up=
	fi
	say "L$n: done in $((SECONDS - t0)) s"
done

measure_ceiling "ceiling (end)"

elapsed=$((SECONDS - started))
steal=$(awk -v a="$cpu_start" -v b="$(cpu_times)" 'BEGIN {
	split(a, x, " "); split(b, y, " ")
	if (y[2] > x[2]) printf "%.1f%%", 100 * (y[1] - x[1]) / (y[2] - x[2]) }')
"$LOADREPORT" report -results "$results" -markdown "$report" -chart "$chart" -chart-link "$chart_link" \
	-command "$command_line" -started "$started_at" -elapsed "${elapsed}s" -duration "$duration" \
	-warmup "$warmup" -c "$clients" -keys "$keys" -load-start "$load_start" -steal "$steal" -others "$others"
raw=${chart%.svg}.jsonl
cp "$results" "$raw"
say "wrote ${report#"$REPO"/}, ${chart#"$REPO"/} and ${raw#"$REPO"/} (the raw results, one JSON object per measurement)"
say "benchmark finished in $((elapsed / 60)) min $((elapsed % 60)) s"
