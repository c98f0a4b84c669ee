#!/usr/bin/env bash
# Installs what Strata needs from Debian's packages, if missing: the MariaDB server, client and
# mariadb-backup.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

need=()
if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ] && [ ! -x /usr/sbin/mysqld ] && [ -z "${STRATA_MYSQLD:-}" ]; then
  need+=(mariadb-server)
fi
command -v mariadb >/dev/null 2>&1 || need+=(mariadb-client)
# Backups and the copy path of data branches.
command -v mariadb-backup >/dev/null 2>&1 || need+=(mariadb-backup)
command -v mariadb-install-db >/dev/null 2>&1 || [ -x /usr/sbin/mysqld ] || need+=(mariadb-server)

apt_install "${need[@]}"

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo was not found: install a stable Rust toolchain (rustup) and run this again." >&2
  exit 1
fi
