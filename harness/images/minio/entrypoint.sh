#!/bin/sh
# `minio server DIR [--console-address ADDR]` as versitygw: the root user's keys, the S3 API on
# :9000 with MinIO's liveness path, the web UI on the console address, DIR as its posix backend.
set -eu
[ "${1:-}" = server ] || exec "$@"
shift
dir=/data console=:9001
while [ $# -gt 0 ]; do
  case $1 in
    --console-address) console=$2; shift 2 ;;
    --*) shift ;;
    *) dir=$1; shift ;;
  esac
done
exec versitygw --access "$MINIO_ROOT_USER" --secret "$MINIO_ROOT_PASSWORD" --port :9000 \
  --health /minio/health/live --webui "$console" posix "$dir"
