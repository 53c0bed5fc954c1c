#!/bin/sh
# docker-entrypoint.sh of the redis stand-in: like the official image, flags alone are passed
# to redis-server, which runs as the redis user in /data with protected mode off (the
# official image's build turns it off: a container is reached from its network, not loopback).
set -eu
if [ "${1#-}" != "$1" ]; then
	set -- redis-server "$@"
fi
if [ "$1" = redis-server ]; then
	shift
	set -- redis-server --protected-mode no "$@"
	if [ "$(id -u)" = 0 ]; then
		chown -R redis:redis .
		exec setpriv --reuid=redis --regid=redis --init-groups "$@"
	fi
fi
exec "$@"
