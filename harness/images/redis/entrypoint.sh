#!/bin/sh
# The official redis image's entrypoint contract: options or a .conf file as first argument
# mean redis-server; as root with redis-server, own the data and step down to `redis`
# (any other command, e.g. `sh -c …`, keeps running as root, exactly as upstream).
set -e
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then set -- redis-server "$@"; fi
if [ "$1" = redis-server ] && [ "$(id -u)" = 0 ]; then
  find . \! -user redis -exec chown redis '{}' +
  exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi
um=$(umask); [ "$um" = 0022 ] && umask 0077
exec "$@"
