#!/usr/bin/env bash
# stack.sh: run the layers without Docker. Brings up the topology of docker-compose/lN.yml from
# native servers on 127.0.0.1 (same host ports as the compose files) and the layer binaries on
# 8000+N, installing PostgreSQL and Redis through apt-get when they are missing.
#
#   scripts/stack.sh up     [N...|all] [--faults]   build ./cmd/..., start the layers' servers and
#                                         binaries, wait until every service answers GET /health
#                                         with 200; --faults: through fault proxies (see below)
#   scripts/stack.sh down   [N...|all]   stop what `up` started for those layers (data is kept)
#   scripts/stack.sh status [N...|all]   table of servers and processes: state, pid, port, log
#   scripts/stack.sh stop|kill|start|restart NAME...   one server or process by its NAME (see
#                                         status): stop it (SIGTERM; PostgreSQL: a fast shutdown),
#                                         kill it (SIGKILL), start it as `up` does, or stop and start
#
# No layer argument means all. `up` is idempotent: what runs is left running. Everything lives
# under ${DBLAYERS_STACK_DIR:-<repo>/.stack}: bin/ (the binaries) and one directory per server
# or process (data, pidfile, log). `rm -rf .stack` after `down` forgets all data.
# DBLAYERS_STACK_TIMEOUT (default 60) bounds, in seconds, each wait for a service's /health.
# A process's log file is capped at DBLAYERS_LOG_MAX_BYTES (default 20 MiB): past it the file
# becomes NAME.log.1 (replacing the older one) and a new one begins.
#
# The topology of layer N is declared in scripts/stack/lN.sh, one line per server or process,
# with these verbs (`up` runs them in file order, `down` in reverse order):
#
#   pg       NAME PORT [DBNAME...]       PostgreSQL cluster (superuser dbuser/dbpassword,
#                                        development defaults) with these databases
#   replica  NAME PORT PRIMARY           hot-standby streaming replica of the pg named PRIMARY
#                                        (declared earlier), cloned once with pg_basebackup
#   redis    NAME PORT [REDIS-ARG...]    redis-server, e.g. `redis l6-redis 6383 --appendonly yes`
#   ferretdb NAME PORT POSTGRESQL-URL    MongoDB wire-protocol server (tools/ferretdb) keeping its
#                                        documents in that PostgreSQL database (a pg row's)
#   service  NAME PORT [VAR=VALUE...]    HTTP binary NAME (built from cmd/NAME) with HOST=127.0.0.1
#                                        PORT=PORT and these variables; `up` waits for /health
#   process  NAME [VAR=VALUE...]         background binary NAME (a worker, a projector): no port
#
# NAMEs are unique across all layers. Two layers that declare the same kind of server on the same
# port share one server: the first one up starts it, the other reuses it (creating its databases
# there), and `down` leaves it running while a layer still up uses it.
#
# Fault proxies: `up N --faults` (or DBLAYERS_FAULTS=1) also starts one Toxiproxy server (built
# from github.com/Shopify/toxiproxy/v2, the version go.mod pins), its API on 127.0.0.1:8474, with
# a proxy for every pg, replica, redis or ferretdb server that layer N's service and processes
# use: named after the server, on 127.0.0.1:PORT+10000 (l2-redis, 6379: 16379). Every
# 127.0.0.1:PORT of those servers in the service's and processes' variables is rewritten to the
# proxy's port, so faults put on a proxy (cmd/drill, or Toxiproxy's API) sit between the layer
# and that server; nothing else goes through it. A layer up one way is brought down before it
# is brought up the other way. `down` stops Toxiproxy once no layer up uses it.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$REPO/scripts/lib.sh"

STACK_DIR=${DBLAYERS_STACK_DIR:-$REPO/.stack}
BIN=$STACK_DIR/bin
HEALTH_TIMEOUT=${DBLAYERS_STACK_TIMEOUT:-60}
FAULTS=${DBLAYERS_FAULTS:-0}
# Fault proxies: the Toxiproxy server's directory (pidfile, log, and a file lN for every layer
# that runs through it), its API port, and the offset of a proxy's port from its server's.
TOXI_DIR=$STACK_DIR/toxiproxy
TOXI_PORT=8474
PROXY_PORT_OFFSET=10000

usage() {
	sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
	exit 2
}

# ---------------------------------------------------------------------------------------------
# The plan: one row per declaration of every layer file, in file order. Arguments after
# NAME PORT are kept flat in ROW_ARGS, row i owning ROW_ARGC[i] of them from ROW_ARG0[i].

ROW_LAYER=() ROW_VERB=() ROW_NAME=() ROW_PORT=() ROW_ARG0=() ROW_ARGC=() ROW_ARGS=()
DECLARING= # the layer file being read, for error messages

add_row() { # VERB NAME PORT [ARG...]
	local verb=$1 name=$2 port=$3 i
	shift 3
	[[ $name =~ ^[a-z0-9][a-z0-9-]*$ ]] || die "$DECLARING: bad name '$name'"
	[[ -z $port || $port =~ ^[0-9]+$ ]] || die "$DECLARING: $name: bad port '$port'"
	for ((i = 0; i < ${#ROW_NAME[@]}; i++)); do
		if [[ ${ROW_NAME[i]} == "$name" && (${ROW_VERB[i]} != "$verb" || ${ROW_PORT[i]} != "$port") ]]; then
			die "$DECLARING: $name is declared twice, differently"
		fi
		if [[ -n $port && ${ROW_PORT[i]} == "$port" && ${ROW_VERB[i]} != "$verb" ]]; then
			die "$DECLARING: port $port of $name is already the port of ${ROW_VERB[i]} ${ROW_NAME[i]}"
		fi
	done
	ROW_LAYER+=("$LAYER") ROW_VERB+=("$verb") ROW_NAME+=("$name") ROW_PORT+=("$port")
	ROW_ARG0+=("${#ROW_ARGS[@]}") ROW_ARGC+=("$#")
	ROW_ARGS+=("$@")
}

check_env_args() {
	local arg
	for arg in "$@"; do
		[[ $arg =~ ^[A-Z_][A-Z0-9_]*= ]] || die "$DECLARING: '$arg' is not VAR=VALUE"
	done
}

# The verbs of scripts/stack/lN.sh.
pg() {
	(($# >= 2)) || die "$DECLARING: usage: pg NAME PORT [DBNAME...]"
	add_row pg "$@"
}
replica() {
	(($# == 3)) || die "$DECLARING: usage: replica NAME PORT PRIMARY"
	[[ -n $(row_named "$3" pg) ]] || die "$DECLARING: replica $1: no pg named '$3' declared before it"
	add_row replica "$@"
}
redis() {
	(($# >= 2)) || die "$DECLARING: usage: redis NAME PORT [REDIS-ARG...]"
	add_row redis "$@"
}
ferretdb() {
	(($# == 3)) || die "$DECLARING: usage: ferretdb NAME PORT POSTGRESQL-URL"
	add_row ferretdb "$@"
}
service() {
	(($# >= 2)) || die "$DECLARING: usage: service NAME PORT [VAR=VALUE...]"
	check_env_args "${@:3}"
	add_row service "$@"
}
process() {
	(($# >= 1)) || die "$DECLARING: usage: process NAME [VAR=VALUE...]"
	check_env_args "${@:2}"
	add_row process "$1" "" "${@:2}"
}

# Read every layer file; LAYERS lists their numbers in order.
LAYERS=()
load_layers() {
	local file n
	for file in "$REPO"/scripts/stack/l*.sh; do
		n=${file##*/l}
		n=${n%.sh}
		[[ $n =~ ^[0-9]+$ ]] && LAYERS+=("$n")
	done
	((${#LAYERS[@]})) || die "no layer files in scripts/stack/"
	mapfile -t LAYERS < <(printf '%s\n' "${LAYERS[@]}" | sort -n)
	for LAYER in "${LAYERS[@]}"; do
		DECLARING=scripts/stack/l$LAYER.sh
		# shellcheck source=/dev/null
		source "$REPO/$DECLARING"
	done
}

# SELECTED: " N M " for the layers named on the command line (all when none or `all`).
SELECTED=" "
select_layers() {
	local n
	if (($# == 0)) || [[ $* == all ]]; then
		SELECTED+="${LAYERS[*]} "
		return 0
	fi
	for n in "$@"; do
		[[ " ${LAYERS[*]} " == *" $n "* ]] || die "no layer '$n' (layers: ${LAYERS[*]})"
		SELECTED+="$n "
	done
}
selected() { [[ $SELECTED == *" ${ROW_LAYER[$1]} "* ]]; }

row_named() { # NAME [VERB]: print the index of the row NAME (of kind VERB)
	local i
	for ((i = 0; i < ${#ROW_NAME[@]}; i++)); do
		if [[ ${ROW_NAME[i]} == "$1" && (-z ${2:-} || ${ROW_VERB[i]} == "$2") ]]; then
			echo "$i"
			return 0
		fi
	done
}

row_args() { ARGS=("${ROW_ARGS[@]:${ROW_ARG0[$1]}:${ROW_ARGC[$1]}}"); }
row_dir() { echo "$STACK_DIR/${ROW_NAME[$1]}"; }

row_pidfile() {
	local dir
	dir=$(row_dir "$1")
	case ${ROW_VERB[$1]} in
	pg | replica) echo "$dir/data/postmaster.pid" ;;
	redis) echo "$dir/redis.pid" ;;
	ferretdb) echo "$dir/ferretdb.pid" ;;
	*) echo "$dir/${ROW_NAME[$1]}.pid" ;;
	esac
}

row_log() {
	local dir
	dir=$(row_dir "$1")
	case ${ROW_VERB[$1]} in
	pg | replica) echo "$dir/log/postgresql.log" ;;
	redis) echo "$dir/redis.log" ;;
	ferretdb) echo "$dir/ferretdb.log" ;;
	*) echo "$dir/${ROW_NAME[$1]}.log" ;;
	esac
}

# row_binary I: the binary that rows of kind ferretdb, service and process run.
row_binary() {
	case ${ROW_VERB[$1]} in
	ferretdb) echo "$BIN/ferretdb" ;;
	*) echo "$BIN/${ROW_NAME[$1]}" ;;
	esac
}

row_running() {
	case ${ROW_VERB[$1]} in
	pg | replica) pg_running "$(row_dir "$1")" ;;
	redis) pid_alive "$(row_pidfile "$1")" redis-server ;;
	*) pid_alive "$(row_pidfile "$1")" "$(row_binary "$1")" ;;
	esac
}

# running_owner I: print the index of the running server that serves row I's port: row I
# itself, else a row of another name that declares the same server (shared port).
running_owner() {
	local i=$1 j
	if row_running "$i"; then
		echo "$i"
		return 0
	fi
	[[ -n ${ROW_PORT[i]} ]] || return 0
	for ((j = 0; j < ${#ROW_NAME[@]}; j++)); do
		if ((j != i)) && [[ ${ROW_VERB[j]} == "${ROW_VERB[i]}" && ${ROW_PORT[j]} == "${ROW_PORT[i]}" ]] &&
			row_running "$j"; then
			echo "$j"
			return 0
		fi
	done
}

# layer_up N: some service or process of layer N runs.
layer_up() {
	local i
	for ((i = 0; i < ${#ROW_NAME[@]}; i++)); do
		if [[ ${ROW_LAYER[i]} == "$1" && ${ROW_VERB[i]} =~ ^(service|process)$ ]] && row_running "$i"; then
			return 0
		fi
	done
	return 1
}

# needed_elsewhere I: a layer that is not being stopped, and still runs, uses row I's server.
needed_elsewhere() {
	local i=$1 j
	[[ ${ROW_VERB[i]} =~ ^(pg|replica|redis|ferretdb)$ ]] || return 1
	for ((j = 0; j < ${#ROW_NAME[@]}; j++)); do
		if ! selected "$j" && [[ ${ROW_VERB[j]} == "${ROW_VERB[i]}" && ${ROW_PORT[j]} == "${ROW_PORT[i]}" ]] &&
			layer_up "${ROW_LAYER[j]}"; then
			return 0
		fi
	done
	return 1
}

# ---------------------------------------------------------------------------------------------
# Actions

lock_stack() {
	mkdir -p "$STACK_DIR"
	chmod 755 "$STACK_DIR"
	# fd 9: the daemons started by lib.sh get it closed, so only this script holds the lock.
	exec 9>"$STACK_DIR/.lock"
	if ! flock -n 9; then
		say "waiting for another stack.sh to finish (lock $STACK_DIR/.lock)"
		flock -w 300 9 || die "another stack.sh still holds $STACK_DIR/.lock"
	fi
}

build() {
	local i ferret=0
	command -v go >/dev/null 2>&1 || die "building the layers needs Go (https://go.dev/dl/)"
	mkdir -p "$BIN"
	say "building ./cmd/... into $BIN"
	(cd "$REPO" && go build -o "$BIN/" ./cmd/...) || die "go build failed"
	for ((i = 0; i < ${#ROW_NAME[@]}; i++)); do
		selected "$i" && [[ ${ROW_VERB[i]} == ferretdb ]] && ferret=1
	done
	((ferret == 0)) || ferretdb_build "$REPO" "$BIN/ferretdb"
	[[ $FAULTS != 1 ]] || toxiproxy_build "$REPO" "$BIN/toxiproxy-server"
}

install_needed() {
	local i tools=()
	for ((i = 0; i < ${#ROW_NAME[@]}; i++)); do
		selected "$i" || continue
		case ${ROW_VERB[i]} in
		pg | replica) tools+=(postgres) ;;
		redis) tools+=(redis) ;;
		esac
	done
	((${#tools[@]})) || return 0
	mapfile -t tools < <(printf '%s\n' "${tools[@]}" | sort -u)
	ensure_packages "${tools[@]}"
}

up_row() {
	local i=$1 name=${ROW_NAME[$1]} port=${ROW_PORT[$1]} dir owner primary
	dir=$(row_dir "$i")
	row_args "$i"
	owner=$(running_owner "$i")
	if [[ -n $owner && $owner != "$i" ]]; then
		say "$name: reusing ${ROW_NAME[owner]}, which already serves port $port"
		if [[ ${ROW_VERB[i]} == pg ]]; then
			pg_create_databases "$name" "$(pg_bindir)" "$(row_dir "$owner")" "$port" "${ARGS[@]}"
		fi
		return 0
	fi
	case ${ROW_VERB[i]} in
	pg) pg_init_start "$name" "$port" "$dir" "${ARGS[@]}" ;;
	replica)
		primary=$(row_named "${ARGS[0]}" pg)
		pg_replica_start "$name" "$port" "$dir" "${ROW_PORT[primary]}"
		;;
	redis) redis_start "$name" "$port" "$dir" "${ARGS[@]}" ;;
	ferretdb) ferretdb_start "$name" "$port" "$dir" "$(row_binary "$i")" "${ARGS[0]}" ;;
	service)
		proxied_args "${ROW_LAYER[i]}"
		[[ -z $owner ]] && say "$name: starting on 127.0.0.1:$port"
		start_binary "$i" HOST=127.0.0.1 PORT="$port" "${ARGS[@]}" "$(row_binary "$i")"
		wait_for_http "$port" /health "$HEALTH_TIMEOUT" "$(row_pidfile "$i")" ||
			failed "$i" "GET http://127.0.0.1:$port/health did not answer 200 within ${HEALTH_TIMEOUT}s"
		;;
	process)
		proxied_args "${ROW_LAYER[i]}"
		[[ -z $owner ]] && say "$name: starting"
		start_binary "$i" "${ARGS[@]}" "$(row_binary "$i")"
		;;
	esac
}

# start_binary I [VAR=VALUE...] COMMAND [ARG...]: the process of row I, unless it runs.
start_binary() {
	local i=$1 cmd
	shift
	for cmd in "$@"; do [[ $cmd == *=* ]] || break; done
	[[ -x $cmd ]] || die "${ROW_NAME[i]}: no binary $cmd (is there a cmd/${ROW_NAME[i]}?)"
	proc_start "$(row_dir "$i")" "$(row_pidfile "$i")" "$(row_log "$i")" "$@"
}

failed() {
	show_log "$(row_log "$1")"
	die "${ROW_NAME[$1]}: $2 (log: $(row_log "$1"))"
}

down_row() {
	local i=$1 owner
	owner=$(running_owner "$i")
	[[ -n $owner ]] || return 0
	if needed_elsewhere "$i"; then
		say "${ROW_NAME[owner]}: left running, a layer that is still up uses it"
		return 0
	fi
	stop_row "$owner"
}

# stop_row I: stop the server or process of row I, which runs.
stop_row() {
	say "${ROW_NAME[$1]}: stopping"
	case ${ROW_VERB[$1]} in
	pg | replica) pg_stop "$(row_dir "$1")" ;;
	redis) redis_stop "$(row_dir "$1")" ;;
	ferretdb) ferretdb_stop "$(row_dir "$1")" ;;
	*) proc_stop "$(row_pidfile "$1")" 15 "$(row_binary "$1")" ;;
	esac
}

# kill_row I: SIGKILL the server or process of row I, which runs (PostgreSQL: its postmaster;
# the backends it leaves see it gone and exit), and wait until it has gone. PostgreSQL will not
# start again while its old postmaster's id still exists, even as a zombie, so for a pg or
# replica the wait lasts until the zombie has been reaped too.
kill_row() {
	local pid deadline
	pid=$(pid_of "$(row_pidfile "$1")")
	say "${ROW_NAME[$1]}: SIGKILL to pid $pid"
	kill -KILL "$pid" 2>/dev/null || true
	deadline=$((SECONDS + 10))
	while pid_running "$pid" || { [[ ${ROW_VERB[$1]} =~ ^(pg|replica)$ ]] && kill -0 "$pid" 2>/dev/null; }; do
		((SECONDS < deadline)) || die "${ROW_NAME[$1]}: pid $pid still exists 10s after SIGKILL"
		sleep 0.05
	done
}

# ---------------------------------------------------------------------------------------------
# Fault proxies

backing_verb() { [[ $1 =~ ^(pg|replica|redis|ferretdb)$ ]]; }

# proxied_ports N: print the port of every backing server that a service or process of layer N
# names as 127.0.0.1:PORT in its variables.
proxied_ports() {
	local i j port
	for ((i = 0; i < ${#ROW_NAME[@]}; i++)); do
		if [[ ${ROW_LAYER[i]} != "$1" ]] || ! backing_verb "${ROW_VERB[i]}"; then continue; fi
		port=${ROW_PORT[i]}
		for ((j = 0; j < ${#ROW_NAME[@]}; j++)); do
			[[ ${ROW_LAYER[j]} == "$1" && ${ROW_VERB[j]} =~ ^(service|process)$ ]] || continue
			row_args "$j"
			if [[ " ${ARGS[*]} " =~ 127\.0\.0\.1:$port([^0-9]) ]]; then
				echo "$i"
				break
			fi
		done
	done
}

# proxied_args N: when layer N runs through fault proxies, rewrite 127.0.0.1:PORT to the proxy's
# port in ARGS for every server of layer N that has a proxy.
proxied_args() {
	local i a port
	[[ -e $TOXI_DIR/l$1 ]] || return 0
	for i in $(proxied_ports "$1"); do
		port=${ROW_PORT[i]}
		for a in "${!ARGS[@]}"; do
			ARGS[a]=$(sed -E "s/127\.0\.0\.1:$port([^0-9]|\$)/127.0.0.1:$((port + PROXY_PORT_OFFSET))\1/g" <<<"${ARGS[a]}")
		done
	done
}

# check_fault_mode: refuse to `up` a layer that already runs the other way (with or without
# fault proxies); forget the fault mode of selected layers that are down.
check_fault_mode() {
	local n
	for n in $SELECTED; do
		if ! layer_up "$n"; then
			rm -f "$TOXI_DIR/l$n"
		elif [[ -e $TOXI_DIR/l$n && $FAULTS != 1 ]]; then
			die "layer $n runs through fault proxies: scripts/stack.sh down $n first, or up it with --faults"
		elif [[ ! -e $TOXI_DIR/l$n && $FAULTS == 1 ]]; then
			die "layer $n runs without fault proxies: scripts/stack.sh down $n first"
		fi
	done
}

# fault_proxies_up: start Toxiproxy and the proxies of the selected layers, and mark those
# layers as running through them.
fault_proxies_up() {
	local n i json='' sep=
	toxiproxy_start "$TOXI_DIR" "$BIN/toxiproxy-server" "$TOXI_PORT"
	for n in $SELECTED; do
		for i in $(proxied_ports "$n"); do
			json+="$sep{\"name\":\"${ROW_NAME[i]}\",\"listen\":\"127.0.0.1:$((ROW_PORT[i] + PROXY_PORT_OFFSET))\",\"upstream\":\"127.0.0.1:${ROW_PORT[i]}\"}"
			sep=,
			say "toxiproxy: ${ROW_NAME[i]} on 127.0.0.1:$((ROW_PORT[i] + PROXY_PORT_OFFSET)) -> 127.0.0.1:${ROW_PORT[i]}"
		done
		touch "$TOXI_DIR/l$n"
	done
	toxiproxy_populate "$TOXI_PORT" "[$json]"
}

# fault_proxies_down: stop Toxiproxy when no layer that is up runs through it.
fault_proxies_down() {
	local n
	for n in $SELECTED; do rm -f "$TOXI_DIR/l$n"; done
	compgen -G "$TOXI_DIR/l*" >/dev/null && return 0
	pid_alive "$TOXI_DIR/toxiproxy.pid" && say "toxiproxy: stopping"
	toxiproxy_stop "$TOXI_DIR"
}

cmd_up() {
	local i
	lock_stack
	check_fault_mode
	install_needed
	build
	[[ $FAULTS != 1 ]] || fault_proxies_up
	for ((i = 0; i < ${#ROW_NAME[@]}; i++)); do
		selected "$i" && up_row "$i"
	done
	# Processes have no health endpoint: at least they must have survived the services' start.
	for ((i = 0; i < ${#ROW_NAME[@]}; i++)); do
		if selected "$i" && [[ ${ROW_VERB[i]} == process ]] && ! row_running "$i"; then
			failed "$i" "exited"
		fi
	done
	cmd_status
}

cmd_down() {
	local i
	lock_stack
	for ((i = ${#ROW_NAME[@]} - 1; i >= 0; i--)); do
		selected "$i" && down_row "$i"
	done
	fault_proxies_down
}

# cmd_row ACTION NAME...: stop, kill, start or restart the servers or processes named.
cmd_row() {
	local action=$1 name i owner
	shift
	(($# >= 1)) || usage
	lock_stack
	for name in "$@"; do
		i=$(row_named "$name")
		[[ -n $i ]] || die "no server or process named '$name' (scripts/stack.sh status lists them)"
		owner=$(running_owner "$i")
		case $action in
		stop | kill | restart)
			if [[ -z $owner ]]; then
				[[ $action == restart ]] || say "$name: not running"
			elif [[ $action == kill ]]; then
				kill_row "$owner"
			else
				stop_row "$owner"
			fi
			;;&
		start | restart) up_row "$i" ;;
		esac
	done
}

cmd_status() {
	local i owner state pid fmt='%-5s %-16s %-8s %-5s %-8s %-20s %s\n'
	# shellcheck disable=SC2059 # the format is the constant above
	printf "$fmt" LAYER NAME KIND PORT PID STATE LOG
	for ((i = 0; i < ${#ROW_NAME[@]}; i++)); do
		selected "$i" || continue
		owner=$(running_owner "$i")
		pid=- state=stopped
		if [[ -n $owner ]]; then
			pid=$(pid_of "$(row_pidfile "$owner")")
			state=running
			[[ $owner == "$i" ]] || state="via ${ROW_NAME[owner]}"
			if [[ ${ROW_VERB[i]} == service ]]; then
				state="running, /health $(http_status "${ROW_PORT[i]}" /health || echo -)"
			fi
		fi
		# shellcheck disable=SC2059
		printf "$fmt" "L${ROW_LAYER[i]}" "${ROW_NAME[i]}" "${ROW_VERB[i]}" "${ROW_PORT[i]:--}" \
			"$pid" "$state" "$(row_log "${owner:-$i}")"
	done
	if pid_alive "$TOXI_DIR/toxiproxy.pid" toxiproxy-server; then
		# shellcheck disable=SC2059
		printf "$fmt" - toxiproxy proxy "$TOXI_PORT" "$(pid_of "$TOXI_DIR/toxiproxy.pid")" \
			"running, for L$(cd "$TOXI_DIR" && compgen -G 'l*' | sed 's/^l//' | sort -n | paste -sd, -)" "$TOXI_DIR/toxiproxy.log"
	fi
}

(($# >= 1)) || usage
action=$1
shift
load_layers
case $action in
stop | kill | start | restart)
	cmd_row "$action" "$@"
	exit
	;;
esac
args=()
for arg in "$@"; do
	if [[ $arg == --faults ]]; then FAULTS=1; else args+=("$arg"); fi
done
select_layers "${args[@]}"
case $action in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
*) usage ;;
esac
