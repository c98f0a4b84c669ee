#!/usr/bin/env bash
# Installs the real clients the tests drive, at pinned versions: PyMySQL and mysqlclient (PyPI),
# mysql2 and @planetscale/database (npm), sysbench and what building mysqlclient needs (Debian).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."

need=()
for pkg in libmariadb-dev pkg-config gcc sysbench xfsprogs; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
apt_install "${need[@]}"

python3 -m pip install --quiet --disable-pip-version-check -r tests/clients/requirements.txt 2>&1 | grep -v "Running pip as the 'root' user" || true
if [ ! -f tests/clients/node_modules/mysql2/package.json ] || ! grep -q '"version": "3.24.6"' tests/clients/node_modules/mysql2/package.json \
  || ! grep -q '"version": "1.20.2"' tests/clients/node_modules/@planetscale/database/package.json 2>/dev/null; then
  (cd tests/clients && npm ci --no-audit --no-fund --silent)
fi
