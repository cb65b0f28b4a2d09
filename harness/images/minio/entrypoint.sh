#!/bin/sh
# `minio server DIR [options]` as a single-node Garage on DIR, serving S3 on :9000 with MinIO's
# root keys as its default key (which may create buckets); any other command runs as given.
set -e
[ "$1" = minio ] && shift
if [ "$1" = server ]; then
  dir=$2
  if [ -z "${MINIO_ROOT_USER:-}" ] || [ -z "${MINIO_ROOT_PASSWORD:-}" ]; then
    echo "MINIO_ROOT_USER and MINIO_ROOT_PASSWORD must be set" >&2; exit 1
  fi
  mkdir -p "$dir/.garage"
  [ -s "$dir/.garage/rpc_secret" ] ||
    od -An -tx1 -N32 /dev/urandom | tr -d ' \n' > "$dir/.garage/rpc_secret"
  cat > /tmp/garage.toml <<CONF
metadata_dir = "$dir/.garage/meta"
data_dir = "$dir/.garage/data"
db_engine = "lmdb"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:3901"

[s3_api]
api_bind_addr = "[::]:9000"
s3_region = "us-east-1"
CONF
  GARAGE_RPC_SECRET=$(cat "$dir/.garage/rpc_secret") GARAGE_DEFAULT_ACCESS_KEY=$MINIO_ROOT_USER \
    GARAGE_DEFAULT_SECRET_KEY=$MINIO_ROOT_PASSWORD \
    exec /garage -c /tmp/garage.toml server --single-node --default-access-key
fi
exec "$@"
