"""Operations on a running estate: backups and restores (ops/docker_backup.py)."""
