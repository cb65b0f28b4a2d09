#!/bin/sh
# `minio server DIR [options]` as rclone's S3 server on :9000 with MinIO's root keys; any other
# command runs as given.
set -e
[ "$1" = minio ] && shift
if [ "$1" = server ]; then
  [ -n "${MINIO_ROOT_USER:-}" ] && [ -n "${MINIO_ROOT_PASSWORD:-}" ] || {
    echo "MINIO_ROOT_USER and MINIO_ROOT_PASSWORD must be set" >&2; exit 1; }
  mkdir -p "$2"
  exec rclone serve s3 --addr :9000 --auth-key "$MINIO_ROOT_USER,$MINIO_ROOT_PASSWORD" "$2"
fi
exec "$@"
