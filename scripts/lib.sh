# shellcheck shell=bash
# lib.sh: helpers shared by scripts/stack.sh (the local stack) and scripts/test.sh (the test
# runner). Source it from a bash script that runs with `set -euo pipefail`.
#
# Rules kept by everything in here:
#   * every server binds 127.0.0.1 only;
#   * every wait has a deadline (no unbounded loop, no unbounded wait);
#   * every start is idempotent: starting what already runs is a no-op;
#   * a process is only ever stopped through the pidfile this library wrote for it.

# Development defaults, the same as the original project and docker-compose/*.yml. They only
# guard servers bound to 127.0.0.1 on a developer machine or in a throw-away test directory;
# never reuse them for anything reachable from a network.
DBL_PG_USER=dbuser
DBL_PG_PASSWORD=dbpassword
# The role streaming replicas connect as (replica verb): replication only, not a superuser.
DBL_PG_REPL_USER=replicator
DBL_PG_REPL_PASSWORD=dbpassword

# scripts/stack.sh holds its lock on file descriptor 9. Every daemon started here gets fd 9
# closed (9>&-): a daemon that inherited it would hold the lock for as long as it runs.

# Extra postgresql.conf lines for clusters started by pg_init_start (newline separated),
# e.g. the test runner turns fsync off for its throw-away cluster.
DBL_PG_SETTINGS=${DBL_PG_SETTINGS:-}

# Password method of new clusters for TCP connections: scram-sha-256 (the default), or md5,
# which checks the same password at a fraction of the CPU (the test runner's choice).
DBL_PG_HOST_AUTH=${DBL_PG_HOST_AUTH:-scram-sha-256}

say() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
	say "error: $*"
	exit 1
}

# show_log FILE [LINES]: print the end of a log file to stderr, to explain a failure.
show_log() {
	[[ -s $1 ]] || return 0
	say "last lines of $1:"
	tail -n "${2:-20}" "$1" | sed 's/^/    /' >&2
}

# ---------------------------------------------------------------------------------------------
# Packages

# ensure_packages [TOOL...]: install through apt-get whatever of these tools is missing:
# postgres, redis, hey, cc (a C toolchain, which `go test -race` needs), chromium (the browser
# the API-docs test drives), shellcheck, docker (the engine, docker.io), debootstrap (for
# scripts/images.sh). Without arguments:
# postgres redis hey. Does nothing (and needs no network) when everything is there.
ensure_packages() {
	local tools=("$@") pkgs=() tool
	((${#tools[@]})) || tools=(postgres redis hey)
	for tool in "${tools[@]}"; do
		case $tool in
		postgres) pg_bindir >/dev/null 2>&1 || pkgs+=(postgresql-15) ;;
		redis) command -v redis-server >/dev/null 2>&1 || pkgs+=(redis-server) ;;
		hey) command -v hey >/dev/null 2>&1 || pkgs+=(hey) ;;
		cc) command -v gcc >/dev/null 2>&1 || pkgs+=(gcc libc6-dev) ;;
		chromium) command -v chromium >/dev/null 2>&1 || pkgs+=(chromium) ;;
		shellcheck) command -v shellcheck >/dev/null 2>&1 || pkgs+=(shellcheck) ;;
		docker) command -v dockerd >/dev/null 2>&1 || pkgs+=(docker.io) ;;
		debootstrap) command -v debootstrap >/dev/null 2>&1 || pkgs+=(debootstrap) ;;
		*) die "ensure_packages: unknown tool '$tool'" ;;
		esac
	done
	((${#pkgs[@]} == 0)) || apt_install "${pkgs[@]}"
}

# apt_install PACKAGE...: a quiet, non-interactive apt-get update + install, as root or through
# passwordless sudo. Installing must not start Debian's own services: a packaged Redis on 6379 or
# a "main" PostgreSQL cluster on 5432 would take ports the local stack uses. So, for the time of
# the install only, a policy-rc.d forbids service starts and postgresql-common is told not to
# create its main cluster (the way the official postgres image does it).
apt_install() {
	local sudo=() pkgs=("$@") log rc=0 policy=/usr/sbin/policy-rc.d
	local nocluster=/etc/postgresql-common/createcluster.d/zz-dblayers-no-main-cluster.conf
	local made_policy=0 made_nocluster=0
	command -v apt-get >/dev/null 2>&1 ||
		die "missing packages (${pkgs[*]}) and no apt-get here: install them by hand"
	if ((EUID != 0)); then
		if ! command -v sudo >/dev/null 2>&1 || ! sudo -n true 2>/dev/null; then
			die "missing packages: run as root, or: sudo apt-get install ${pkgs[*]}"
		fi
		sudo=(sudo -n)
	fi
	say "installing ${pkgs[*]} with apt-get"
	if [[ ! -e $policy ]]; then
		printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
		"${sudo[@]}" chmod 755 "$policy"
		made_policy=1
	fi
	if [[ ! -e $nocluster ]]; then
		"${sudo[@]}" mkdir -p "${nocluster%/*}"
		echo 'create_main_cluster = false' | "${sudo[@]}" tee "$nocluster" >/dev/null
		made_nocluster=1
	fi
	log=$(mktemp)
	{
		if [[ -z ${DBL_APT_UPDATED:-} ]]; then
			"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -qq update
		fi &&
			"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -qq install -y \
				--no-install-recommends -o Dpkg::Options::=--force-confdef \
				-o Dpkg::Options::=--force-confold "${pkgs[@]}"
	} >"$log" 2>&1 || rc=$?
	DBL_APT_UPDATED=1
	((made_policy == 0)) || "${sudo[@]}" rm -f "$policy"
	((made_nocluster == 0)) || "${sudo[@]}" rm -f "$nocluster"
	if ((rc != 0)); then
		show_log "$log" 30
		rm -f "$log"
		die "apt-get install ${pkgs[*]} failed (exit $rc)"
	fi
	rm -f "$log"
}

# ---------------------------------------------------------------------------------------------
# Ports and processes

# port_in_use PORT: true when something accepts TCP connections on 127.0.0.1:PORT.
port_in_use() {
	# shellcheck disable=SC2016 # $0 expands in the inner shell
	timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0"' "$1" 2>/dev/null
}

# wait_for_port PORT SECONDS [PIDFILE]: wait until 127.0.0.1:PORT accepts connections. Fails
# at the deadline, or at once if the process of PIDFILE (when given) has exited.
wait_for_port() {
	local port=$1 deadline=$((SECONDS + $2)) pidfile=${3:-}
	until port_in_use "$port"; do
		if [[ -n $pidfile ]] && ! pid_alive "$pidfile"; then
			return 1
		fi
		((SECONDS < deadline)) || return 1
		sleep 0.1
	done
}

# http_send METHOD PORT PATH [JSON]: send METHOD http://127.0.0.1:PORT/PATH (with JSON as its
# body) and print the status code of the answer, using bash's /dev/tcp only (a fresh machine
# may have no curl).
http_send() {
	local line
	# shellcheck disable=SC2016 # $0 … $3 and $line expand in the inner shell
	line=$(timeout 5 bash -c '
		exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
		printf "%s %s HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n" "$0" "$2" >&3
		[[ -z $3 ]] || printf "Content-Type: application/json\r\nContent-Length: %d\r\n" "${#3}" >&3
		printf "\r\n%s" "$3" >&3
		IFS= read -r line <&3 && printf "%s" "$line"' "$1" "$2" "$3" "${4:-}" 2>/dev/null) || return 1
	line=${line#* }
	printf '%s\n' "${line%% *}"
}

# http_status PORT PATH: print the HTTP status code of GET http://127.0.0.1:PORT/PATH.
http_status() { http_send GET "$1" "$2"; }

# wait_for_http PORT PATH SECONDS [PIDFILE]: wait until GET PATH answers 200.
wait_for_http() {
	local port=$1 path=$2 deadline=$((SECONDS + $3)) pidfile=${4:-}
	until [[ $(http_status "$port" "$path" || true) == 200 ]]; do
		if [[ -n $pidfile ]] && ! pid_alive "$pidfile"; then
			return 1
		fi
		((SECONDS < deadline)) || return 1
		sleep 0.2
	done
}

# free_port VAR: set VAR to a TCP port that nothing listens on, from 20000-31999. That range is
# below Linux's ephemeral range (so outgoing connections do not take it meanwhile) and far from
# every port of the original topology (5432-5454, 6379-6392, 8000-8011, 9090, 27017), so a
# throw-away server never collides with a running dev stack. Ports handed out earlier in this
# shell are not handed out again.
DBL_PORTS_GIVEN=" "
free_port() {
	local -n _fp_out=$1
	local _fp_i _fp_port
	for ((_fp_i = 0; _fp_i < 100; _fp_i++)); do
		_fp_port=$((20000 + RANDOM % 12000))
		[[ $DBL_PORTS_GIVEN == *" $_fp_port "* ]] && continue
		port_in_use "$_fp_port" && continue
		DBL_PORTS_GIVEN+="$_fp_port "
		_fp_out=$_fp_port
		return 0
	done
	die "found no free TCP port in 20000-31999 after 100 tries"
}

# pid_running PID: true when process PID exists and is not a zombie (a daemon's parent is init,
# which may take a while to reap it after it has exited).
pid_running() {
	local stat
	kill -0 "$1" 2>/dev/null || return 1
	{ stat=$(<"/proc/$1/stat"); } 2>/dev/null || return 0
	stat=${stat##*) }
	[[ ${stat%% *} != Z ]]
}

# pid_alive PIDFILE [NEEDLE]: true when the process whose id is on the first line of PIDFILE
# runs (and, with NEEDLE, its command line contains NEEDLE: a guard against reused ids).
pid_alive() {
	local pid=
	[[ -r $1 ]] || return 1
	{ read -r pid || [[ -n $pid ]]; } <"$1" || return 1
	[[ $pid =~ ^[0-9]+$ ]] && pid_running "$pid" || return 1
	[[ -z ${2:-} ]] || tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$2"
}

# pid_of PIDFILE: print the process id recorded in PIDFILE (first line).
pid_of() {
	local pid=
	{ read -r pid || [[ -n $pid ]]; } <"$1" 2>/dev/null || true
	printf '%s\n' "$pid"
}

# LOG_CAP_AWK appends its input to the file `file` and, when that passes `max` bytes, renames it
# to file.1 (replacing the previous one) and starts a new one: a process keeps at most about
# twice max of log. `size` is what the file held already.
# shellcheck disable=SC2016 # awk's own $0
readonly LOG_CAP_AWK='{
	print >>file
	fflush(file)
	size += length($0) + 1
	if (size >= max) {
		close(file)
		system("mv -f \"" file "\" \"" file ".1\"")
		size = 0
	}
}'

# proc_start DIR PIDFILE LOGFILE [VAR=VALUE...] COMMAND [ARG...]: start COMMAND in the
# background, detached in its own session (a Ctrl-C on the caller's terminal must not reach it),
# in directory DIR, with the variables added to the environment, output appended to LOGFILE, and
# its process id in PIDFILE. No-op when the process of PIDFILE still runs. LOGFILE is capped:
# past DBLAYERS_LOG_MAX_BYTES (default 20 MiB) it becomes LOGFILE.1 and a new one begins, so a
# long load run cannot fill the disk with access-log lines.
proc_start() {
	local dir=$1 pidfile=$2 logfile=$3 max=${DBLAYERS_LOG_MAX_BYTES:-20971520} size awk deadline
	shift 3
	pid_alive "$pidfile" && return 0
	[[ $max =~ ^[1-9][0-9]*$ ]] || die "DBLAYERS_LOG_MAX_BYTES=$max: want a number of bytes"
	mkdir -p "$dir" "${pidfile%/*}" "${logfile%/*}"
	[[ $logfile == /* ]] || logfile=$PWD/$logfile # the command runs in DIR
	rm -f "$pidfile"
	size=$(stat -c %s "$logfile" 2>/dev/null || echo 0)
	# mawk (Debian's awk) reads its input in blocks unless interactive: lines would wait.
	awk=(awk)
	awk -W version 2>&1 | grep -q mawk && awk+=(-W interactive)
	# The inner shell writes its own id, sends its output through the capping awk (which ends
	# when the command's output does), then execs the command under that same id.
	# shellcheck disable=SC2016,SC2086 # $0 … $6, $$ and $@ expand in the inner shell; $6 splits
	setsid bash -c 'cd "$0" && echo $$ >"$1" && exec > >(exec $6 -v file="$2" -v max="$3" -v size="$4" "$5") 2>&1 &&
		shift 6 && exec env "$@"' \
		"$dir" "$pidfile" "$logfile" "$max" "$size" "$LOG_CAP_AWK" "${awk[*]}" "$@" </dev/null >/dev/null 2>&1 9>&- &
	deadline=$((SECONDS + 5))
	until [[ -s $pidfile ]]; do
		((SECONDS < deadline)) || die "$pidfile: process did not start"
		sleep 0.05
	done
}

# proc_stop PIDFILE [SECONDS] [NEEDLE]: SIGTERM the process of PIDFILE, SIGKILL it if it still
# runs after SECONDS (default 10), and remove PIDFILE. No-op when it does not run.
proc_stop() {
	local pidfile=$1 grace=${2:-10} needle=${3:-} pid deadline
	if ! pid_alive "$pidfile" "$needle"; then
		rm -f "$pidfile"
		return 0
	fi
	pid=$(pid_of "$pidfile")
	kill -TERM "$pid" 2>/dev/null || true
	deadline=$((SECONDS + grace))
	while pid_running "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
	if pid_running "$pid"; then
		say "pid $pid ($pidfile) still runs ${grace}s after SIGTERM: sending SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
		deadline=$((SECONDS + 5))
		while pid_running "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
	fi
	rm -f "$pidfile"
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL

# pg_bindir: print the directory holding initdb/pg_ctl/postgres: $DBLAYERS_PG_BIN, else
# Debian's /usr/lib/postgresql/15/bin, else the newest /usr/lib/postgresql/*/bin, else where
# pg_ctl on PATH really lives.
pg_bindir() {
	local dir
	for dir in "${DBLAYERS_PG_BIN:-}" /usr/lib/postgresql/15/bin \
		$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -rV); do
		if [[ -n $dir && -x $dir/initdb && -x $dir/pg_ctl ]]; then
			printf '%s\n' "$dir"
			return 0
		fi
	done
	dir=$(command -v pg_ctl 2>/dev/null) || return 1
	dir=$(dirname "$(readlink -f "$dir")")
	[[ -x $dir/initdb ]] && printf '%s\n' "$dir"
}

# as_pg COMMAND...: run a PostgreSQL tool. initdb and postgres refuse to run as root, so as root
# they run as the `postgres` OS user (created by Debian's postgresql-common).
as_pg() {
	if ((EUID == 0)); then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

# pg_own DIR...: as root, give DIRs to the postgres user (and check it can reach them).
pg_own() {
	((EUID == 0)) || return 0
	id postgres >/dev/null 2>&1 || die "running as root needs the 'postgres' OS user (apt-get install postgresql-15)"
	chown -R postgres: "$@"
	runuser -u postgres -- test -w "$1" ||
		die "the postgres user cannot reach $1: some parent directory is closed to it (use a directory under /tmp or /var/tmp)"
}

# pg_running DIR: true when the cluster of pg_init_start DIR runs.
pg_running() {
	[[ -f $1/data/postmaster.pid ]] && pid_alive "$1/data/postmaster.pid"
}

# pg_port DIR: print the port of the cluster of pg_init_start DIR (as last configured).
pg_port() {
	sed -n 's/^port = \([0-9]*\)$/\1/p' "$1/data/dblayers.conf" 2>/dev/null
}

# pg_init_start NAME PORT DIR [DBNAME...]: a PostgreSQL cluster in DIR/data, listening on
# 127.0.0.1:PORT with its Unix socket in DIR/data, logging to DIR/log/postgresql.log. Creates
# the cluster unless DIR/data holds one (superuser dbuser/dbpassword, scram-sha-256 over TCP),
# starts it unless it runs, then creates each DBNAME that does not exist yet.
pg_init_start() {
	local name=$1 port=$2 dir=$3 bin
	shift 3
	bin=$(pg_bindir) || die "$name: no PostgreSQL binaries (ensure_packages postgres)"
	mkdir -p "$dir/log"
	chmod 755 "$dir"
	pg_own "$dir"
	if ! pg_running "$dir"; then
		if [[ -s $dir/data/PG_VERSION ]]; then
			pg_start "$name" "$bin" "$dir" "$port"
		else
			pg_initdb "$name" "$bin" "$dir"
			pg_start "$name" "$bin" "$dir" "$port"
			[[ $DBL_PG_HOST_AUTH != md5 ]] || pg_psql "$name" "$bin" "$dir" "$port" \
				-c "SET password_encryption = 'md5'" -c "ALTER ROLE $DBL_PG_USER PASSWORD '$DBL_PG_PASSWORD'"
		fi
	elif [[ $(pg_port "$dir") != "$port" ]]; then
		die "$name: already runs on port $(pg_port "$dir"), not $port (stop it first)"
	fi
	pg_create_databases "$name" "$bin" "$dir" "$port" "$@"
}

# pg_initdb NAME BIN DIR: create the cluster. Local (socket) connections are trusted: the socket
# lives in the data directory, which only the postgres user (and root) can enter.
pg_initdb() {
	local name=$1 bin=$2 dir=$3 pwfile=$3/.pwfile
	say "$name: initdb $dir/data"
	printf '%s\n' "$DBL_PG_PASSWORD" >"$pwfile"
	chmod 600 "$pwfile"
	pg_own "$pwfile"
	if ! as_pg "$bin/initdb" -D "$dir/data" -U "$DBL_PG_USER" --pwfile="$pwfile" \
		--auth-local=trust --auth-host="$DBL_PG_HOST_AUTH" -E UTF8 --no-locale \
		>"$dir/log/initdb.log" 2>&1; then
		rm -f "$pwfile"
		show_log "$dir/log/initdb.log"
		die "$name: initdb failed"
	fi
	rm -f "$pwfile"
	echo "include_if_exists = 'dblayers.conf'" >>"$dir/data/postgresql.conf"
}

# pg_start NAME BIN DIR PORT: (re)write the connection settings, which may change between runs,
# into DIR/data/dblayers.conf (included by postgresql.conf) and start the server.
pg_start() {
	local name=$1 bin=$2 dir=$3 port=$4 data=$3/data sock
	sock="$data/.s.PGSQL.$port"
	((${#sock} < 100)) || die "$name: socket path $sock is too long for Unix sockets: use a shorter DBLAYERS_STACK_DIR"
	[[ $data != *"'"* ]] || die "$name: quote in path $data"
	port_in_use "$port" && die "$name: port $port is taken by a process this script did not start"
	{
		echo "# Written by scripts/lib.sh at every start: change DBL_PG_SETTINGS, not this file."
		echo "listen_addresses = '127.0.0.1'"
		echo "port = $port"
		echo "unix_socket_directories = '$data'"
		printf '%s\n' "$DBL_PG_SETTINGS"
	} >"$data/dblayers.conf"
	pg_own "$data/dblayers.conf"
	say "$name: starting PostgreSQL on 127.0.0.1:$port"
	if ! as_pg "$bin/pg_ctl" -D "$data" -l "$dir/log/postgresql.log" -w -t 60 -s start 9>&-; then
		show_log "$dir/log/postgresql.log"
		die "$name: PostgreSQL did not start"
	fi
}

# pg_psql NAME BIN DIR PORT PSQL-ARG...: run psql as the superuser on the database postgres of
# the cluster of DIR, through its Unix socket; print the bare result rows.
pg_psql() {
	local name=$1 bin=$2 dir=$3 port=$4
	shift 4
	as_pg "$bin/psql" -h "$dir/data" -p "$port" -U "$DBL_PG_USER" -d postgres -XAtq \
		-v ON_ERROR_STOP=1 "$@" || die "$name: psql $* failed"
}

# pg_create_databases NAME BIN DIR PORT DBNAME...: create the databases that do not exist.
pg_create_databases() {
	local name=$1 bin=$2 dir=$3 port=$4 db
	shift 4
	for db in "$@"; do
		[[ $db =~ ^[a-z_][a-z0-9_]*$ ]] || die "$name: bad database name '$db'"
		[[ $(pg_psql "$name" "$bin" "$dir" "$port" -c "SELECT 1 FROM pg_database WHERE datname = '$db'") == 1 ]] &&
			continue
		pg_psql "$name" "$bin" "$dir" "$port" -c "CREATE DATABASE \"$db\""
		say "$name: created database $db"
	done
}

# pg_replica_start NAME PORT DIR PRIMARY_PORT: a hot-standby streaming replica of the cluster
# on 127.0.0.1:PRIMARY_PORT, cloned once with pg_basebackup (-R writes standby.signal and
# primary_conninfo) as the replication-only role $DBL_PG_REPL_USER through a physical
# replication slot named after NAME (l3-replica-1 -> l3_replica_1), both created on the primary
# when missing. Later starts reuse the clone and resume streaming from the slot, which kept the
# WAL the replica missed meanwhile. Replication connections are accepted from loopback only
# (initdb's pg_hba.conf).
pg_replica_start() {
	local name=$1 port=$2 dir=$3 primary_port=$4 bin slot=${1//-/_}
	bin=$(pg_bindir) || die "$name: no PostgreSQL binaries (ensure_packages postgres)"
	mkdir -p "$dir/log"
	chmod 755 "$dir"
	pg_own "$dir"
	if pg_running "$dir"; then
		[[ $(pg_port "$dir") == "$port" ]] || die "$name: already runs on port $(pg_port "$dir"), not $port"
		return 0
	fi
	if [[ ! -s $dir/data/PG_VERSION ]]; then
		pg_replication_setup "$name" "$bin" "$primary_port" "$slot"
		say "$name: pg_basebackup from 127.0.0.1:$primary_port as $DBL_PG_REPL_USER, slot $slot"
		rm -rf "$dir/data"
		if ! as_pg env PGPASSWORD="$DBL_PG_REPL_PASSWORD" "$bin/pg_basebackup" -h 127.0.0.1 \
			-p "$primary_port" -U "$DBL_PG_REPL_USER" -S "$slot" -D "$dir/data" -R -X stream -c fast \
			>"$dir/log/basebackup.log" 2>&1; then
			show_log "$dir/log/basebackup.log"
			rm -rf "$dir/data"
			die "$name: pg_basebackup failed"
		fi
	fi
	pg_start "$name" "$bin" "$dir" "$port"
}

# pg_replication_setup NAME BIN PRIMARY_PORT SLOT: on the primary, create the replication role
# $DBL_PG_REPL_USER (LOGIN REPLICATION, not a superuser) and the physical slot SLOT, each
# unless it exists.
pg_replication_setup() {
	local name=$1 bin=$2 primary_port=$3 slot=$4
	[[ $slot =~ ^[a-z0-9_]+$ ]] || die "$name: bad slot name '$slot'"
	as_pg env PGPASSWORD="$DBL_PG_PASSWORD" "$bin/psql" -h 127.0.0.1 -p "$primary_port" \
		-U "$DBL_PG_USER" -d postgres -XAtq -v ON_ERROR_STOP=1 >/dev/null <<-SQL || die "$name: could not create the replication role or slot on the primary"
		DO \$\$ BEGIN
			IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$DBL_PG_REPL_USER') THEN
				CREATE ROLE $DBL_PG_REPL_USER WITH LOGIN REPLICATION PASSWORD '$DBL_PG_REPL_PASSWORD';
			END IF;
		END \$\$;
		SELECT pg_create_physical_replication_slot('$slot')
		WHERE NOT EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = '$slot');
	SQL
}

# pg_stop DIR: stop the cluster of DIR (fast shutdown, immediate if that times out).
pg_stop() {
	local dir=$1 bin
	pg_running "$dir" || return 0
	bin=$(pg_bindir) || die "no PostgreSQL binaries to stop $dir"
	as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 30 -s stop ||
		as_pg "$bin/pg_ctl" -D "$dir/data" -m immediate -w -t 15 -s stop ||
		say "could not stop PostgreSQL in $dir"
}

# ---------------------------------------------------------------------------------------------
# Redis

# redis_start NAME PORT DIR [REDIS-SERVER-ARG...]: a daemonized redis-server on
# 127.0.0.1:PORT, working directory, pidfile (DIR/redis.pid) and log (DIR/redis.log) in DIR.
# No-op when it already runs.
redis_start() {
	local name=$1 port=$2 dir=$3 bin
	shift 3
	bin=$(command -v redis-server) || die "$name: no redis-server (ensure_packages redis)"
	mkdir -p "$dir"
	if pid_alive "$dir/redis.pid" redis-server; then
		[[ $(<"$dir/port") == "$port" ]] || die "$name: already runs on port $(<"$dir/port"), not $port"
		return 0
	fi
	port_in_use "$port" && die "$name: port $port is taken by a process this script did not start"
	rm -f "$dir/redis.pid"
	echo "$port" >"$dir/port"
	say "$name: starting Redis on 127.0.0.1:$port"
	"$bin" --bind 127.0.0.1 --port "$port" --daemonize yes --dir "$dir" \
		--pidfile "$dir/redis.pid" --logfile "$dir/redis.log" "$@" 9>&- ||
		die "$name: redis-server refused its arguments"
	# Redis writes its pidfile only after it has started listening.
	local deadline=$((SECONDS + 15))
	until port_in_use "$port" && pid_alive "$dir/redis.pid" redis-server; do
		if ((SECONDS >= deadline)); then
			show_log "$dir/redis.log"
			die "$name: Redis did not come up on port $port"
		fi
		sleep 0.1
	done
}

# redis_stop DIR: stop the Redis of redis_start DIR.
redis_stop() {
	proc_stop "$1/redis.pid" 15 redis-server
}

# ---------------------------------------------------------------------------------------------
# FerretDB: MongoDB is not packaged in Debian; tools/ferretdb (its own Go module) embeds a
# FerretDB v1 with its PostgreSQL backend, a real MongoDB wire-protocol server whose documents
# live in a PostgreSQL database (indexed on _id).

# ferretdb_build REPO OUT: build REPO/tools/ferretdb into the binary OUT.
ferretdb_build() {
	say "building tools/ferretdb into $2"
	(cd "$1/tools/ferretdb" && go build -o "$2" .) || die "go build of tools/ferretdb failed"
}

# ferretdb_start NAME PORT DIR BINARY PGURL: FerretDB BINARY on 127.0.0.1:PORT, keeping its
# documents in the PostgreSQL database of PGURL (which must exist; FerretDB waits up to 30 s at
# start for it), pidfile DIR/ferretdb.pid, log DIR/ferretdb.log. No-op when it already runs.
ferretdb_start() {
	local name=$1 port=$2 dir=$3 bin=$4 pgurl=$5
	pid_alive "$dir/ferretdb.pid" "$bin" && return 0
	port_in_use "$port" && die "$name: port $port is taken by a process this script did not start"
	say "$name: starting FerretDB on 127.0.0.1:$port"
	proc_start "$dir" "$dir/ferretdb.pid" "$dir/ferretdb.log" \
		"$bin" -listen-addr "127.0.0.1:$port" -postgresql-url "$pgurl"
	if ! wait_for_port "$port" 30 "$dir/ferretdb.pid"; then
		show_log "$dir/ferretdb.log"
		die "$name: FerretDB did not come up on port $port"
	fi
}

# ferretdb_stop DIR: stop the FerretDB of ferretdb_start DIR.
ferretdb_stop() {
	proc_stop "$1/ferretdb.pid" 15 ferretdb
}

# ---------------------------------------------------------------------------------------------
# Toxiproxy: a TCP proxy with an HTTP API that puts faults ("toxics": latency, a hang, resets,
# connections cut after N bytes) on the connections it carries. `stack.sh up --faults` puts one
# between the layers and their servers; cmd/drill adds and removes the toxics.

# toxiproxy_build REPO OUT: build Toxiproxy's server, at the version REPO's go.mod pins, into OUT.
toxiproxy_build() {
	say "building toxiproxy-server into $2"
	(cd "$1" && go build -o "$2" github.com/Shopify/toxiproxy/v2/cmd/server) || die "go build of toxiproxy-server failed"
}

# toxiproxy_start DIR BINARY PORT: the Toxiproxy server BINARY, its API on 127.0.0.1:PORT,
# pidfile DIR/toxiproxy.pid, log DIR/toxiproxy.log. No-op when it already runs.
toxiproxy_start() {
	local dir=$1 bin=$2 port=$3
	pid_alive "$dir/toxiproxy.pid" "$bin" && return 0
	port_in_use "$port" && die "toxiproxy: port $port is taken by a process this script did not start"
	say "toxiproxy: starting its API on 127.0.0.1:$port"
	proc_start "$dir" "$dir/toxiproxy.pid" "$dir/toxiproxy.log" "$bin" -host 127.0.0.1 -port "$port"
	if ! wait_for_http "$port" /version 15 "$dir/toxiproxy.pid"; then
		show_log "$dir/toxiproxy.log"
		die "toxiproxy did not answer on port $port"
	fi
}

# toxiproxy_stop DIR: stop the Toxiproxy of toxiproxy_start DIR.
toxiproxy_stop() {
	proc_stop "$1/toxiproxy.pid" 10 toxiproxy-server
}

# toxiproxy_populate PORT JSON: create the proxies JSON lists ([{"name", "listen", "upstream"}
# …]) through the API on 127.0.0.1:PORT; a proxy that exists as listed is left as it is.
toxiproxy_populate() {
	local status
	status=$(http_send POST "$1" /populate "$2") || die "toxiproxy on port $1 does not answer"
	[[ $status == 2* ]] || die "toxiproxy refused the proxies $2 (HTTP $status): see its log"
}

# ---------------------------------------------------------------------------------------------
# Docker (the Docker part of scripts/test.sh)

# Compose v2 is not packaged in Debian: it is built from the Go module proxy once and kept
# outside the clone, so later runs (and later clones) reuse the binary.
DBL_COMPOSE_VERSION=v2.28.1
DBL_CACHE=${DBL_CACHE:-$( ((EUID == 0)) && echo /var/cache/dblayers || echo "${XDG_CACHE_HOME:-$HOME/.cache}/dblayers")}

# docker_engine: make `docker info` answer: install docker.io when dockerd is missing, and start
# dockerd detached (its log in $DBL_CACHE/dockerd.log) when none answers. Fails with the reason.
docker_engine() {
	local i
	docker info >/dev/null 2>&1 && return 0
	command -v dockerd >/dev/null 2>&1 || apt_install docker.io
	((EUID == 0)) || die "no Docker engine answers, and only root may start dockerd here"
	mkdir -p "$DBL_CACHE"
	say "starting dockerd (log $DBL_CACHE/dockerd.log)"
	# Detached (its own session, no inherited descriptors): it outlives this script on purpose.
	setsid dockerd >"$DBL_CACHE/dockerd.log" 2>&1 </dev/null 9>&- &
	for ((i = 0; i < 300; i++)); do
		docker info >/dev/null 2>&1 && return 0
		sleep 0.2
	done
	show_log "$DBL_CACHE/dockerd.log"
	die "dockerd did not answer within 60 s"
}

# docker_compose_plugin: make `docker compose` (v2) work, building it when missing.
docker_compose_plugin() {
	local bin=$DBL_CACHE/bin/docker-compose-$DBL_COMPOSE_VERSION plugins=${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins
	docker compose version >/dev/null 2>&1 && return 0
	command -v docker >/dev/null 2>&1 || apt_install docker.io
	if [[ ! -x $bin ]]; then
		say "building docker compose $DBL_COMPOSE_VERSION from the Go module proxy into $bin (minutes, once)"
		mkdir -p "$DBL_CACHE/bin"
		(cd "$DBL_CACHE" && GOFLAGS="" GOBIN="$DBL_CACHE/bin/build" go install "github.com/docker/compose/v2/cmd@$DBL_COMPOSE_VERSION") ||
			die "go install of docker compose $DBL_COMPOSE_VERSION failed"
		mv "$DBL_CACHE/bin/build/cmd" "$bin" && rmdir "$DBL_CACHE/bin/build"
	fi
	mkdir -p "$plugins"
	ln -sf "$bin" "$plugins/docker-compose"
	docker compose version >/dev/null 2>&1 || die "docker compose does not run ($bin)"
}

# docker_prepare REPO ENVFILE TIMESFILE: what the Docker part of scripts/test.sh needs before
# its tests, which it runs beside the go test run: the compose plugin (docker_compose_plugin)
# and the stand-in images (REPO/scripts/images.sh, its variables written to ENVFILE).
# TIMESFILE gets the seconds each took, as shell assignments.
docker_prepare() {
	local repo=$1 envfile=$2 times=$3 step
	step=$SECONDS
	docker_compose_plugin
	echo "compose_plugin_secs=$((SECONDS - step))" >"$times"
	step=$SECONDS
	"$repo/scripts/images.sh" >"$envfile"
	echo "images_secs=$((SECONDS - step))" >>"$times"
}

# lowest_priority: give this shell and whatever it starts the lowest CPU priority, so that it
# only takes what other work leaves: nice 19, and where the kernel groups processes by
# session (autogroup, in which nice orders processes only within their group), the session's
# group too.
lowest_priority() {
	renice -n 19 -p $$ >/dev/null 2>&1 || true
	{ echo 19 >/proc/self/autogroup; } 2>/dev/null || true
}

# normal_priority PID: undo lowest_priority for the session PID leads, once its work is what
# the caller waits for (raising a priority back takes root; elsewhere it stays low).
normal_priority() {
	renice -n 0 -g "$1" >/dev/null 2>&1 || true
	{ echo 0 >"/proc/$1/autogroup"; } 2>/dev/null || true
}
