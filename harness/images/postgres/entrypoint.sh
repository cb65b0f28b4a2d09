#!/usr/bin/env bash
# The official postgres image's entrypoint contract, re-implemented for Debian's PostgreSQL:
# as root, own PGDATA and step down to `postgres`; as any other user (a pod's runAsUser), make
# PGDATA its own and, where that user has no passwd entry, let initdb see one through
# nss_wrapper (docker-library/postgres docker-entrypoint.sh: docker_create_db_directories,
# docker_init_database_dir); on an empty PGDATA, initdb with
# POSTGRES_USER/POSTGRES_PASSWORD, allow host connections with scram-sha-256, create
# POSTGRES_DB, run /docker-entrypoint-initdb.d/* once (*.sql through psql with ON_ERROR_STOP,
# *.sh sourced or run) on a socket-only server; then exec the server.
set -Eeo pipefail
log() { echo "entrypoint: $*"; }

if [ "${1:0:1}" = '-' ]; then set -- postgres "$@"; fi

if [ "$1" = postgres ] && [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA" || :
  exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi

if [ "$1" = postgres ]; then
  mkdir -p "$PGDATA"
  chmod 00700 "$PGDATA" || :
  if [ -f "${POSTGRES_PASSWORD_FILE:-}" ]; then POSTGRES_PASSWORD=$(<"$POSTGRES_PASSWORD_FILE"); fi
  export POSTGRES_USER=${POSTGRES_USER:-postgres}
  export POSTGRES_DB=${POSTGRES_DB:-$POSTGRES_USER}
  if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "${POSTGRES_HOST_AUTH_METHOD:-}" != trust ]; then
      echo "error: database is uninitialized and POSTGRES_PASSWORD is not set" >&2; exit 1
    fi
    if ! getent passwd "$(id -u)" >/dev/null; then
      for wrapper in {/usr,}/lib{/*,}/libnss_wrapper.so; do
        if [ -s "$wrapper" ]; then
          NSS_WRAPPER_PASSWD=$(mktemp) NSS_WRAPPER_GROUP=$(mktemp)
          export LD_PRELOAD=$wrapper NSS_WRAPPER_PASSWD NSS_WRAPPER_GROUP
          printf 'postgres:x:%s:%s:PostgreSQL:%s:/bin/false\n' "$(id -u)" "$(id -g)" "$PGDATA" \
            >"$NSS_WRAPPER_PASSWD"
          printf 'postgres:x:%s:\n' "$(id -g)" >"$NSS_WRAPPER_GROUP"
          break
        fi
      done
    fi
    # shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is a word list, as upstream
    initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "${POSTGRES_PASSWORD:-}") \
      ${POSTGRES_INITDB_ARGS:-}
    if [[ ${LD_PRELOAD:-} == */libnss_wrapper.so ]]; then  # initdb's alone, as upstream
      rm -f "$NSS_WRAPPER_PASSWD" "$NSS_WRAPPER_GROUP"
      unset LD_PRELOAD NSS_WRAPPER_PASSWD NSS_WRAPPER_GROUP
    fi
    printf '\nhost all all all %s\n' "${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}" >> "$PGDATA/pg_hba.conf"
    pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p ${PGPORT:-5432}" -w start  # as upstream
    psql=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc)
    if [ "$POSTGRES_DB" != postgres ]; then
      "${psql[@]}" --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
    fi
    for f in /docker-entrypoint-initdb.d/*; do
      # shellcheck disable=SC1090  # init scripts are the user's
      case $f in
        *.sh) log "running $f"; if [ -x "$f" ]; then "$f"; else . "$f"; fi ;;
        *.sql) log "running $f"; "${psql[@]}" --dbname "$POSTGRES_DB" -f "$f" ;;
        *.sql.gz) log "running $f"; gunzip -c "$f" | "${psql[@]}" --dbname "$POSTGRES_DB" ;;
        *) [ -e "$f" ] && log "ignoring $f" ;;
      esac
    done
    pg_ctl -D "$PGDATA" -m fast -w stop
    log "PostgreSQL init process complete; ready for start up."
  else
    log "PostgreSQL Database directory appears to contain a database; Skipping initialization"
  fi
fi
exec "$@"
