#!/usr/bin/env bash
# Installs the Debian packages shardgate's cluster and tests need, if
# missing. With --drivers (as scripts/test.sh runs it), also the
# applications' drivers and ORMs tests/drivers.rs runs; a local cluster
# (scripts/quickstart.sh) needs none of them.
set -euo pipefail

drivers=0
[ "${1:-}" = "--drivers" ] && drivers=1

need=()
command -v mariadbd >/dev/null 2>&1 || need+=(mariadb-server)
command -v mysql >/dev/null 2>&1 || need+=(mariadb-client)
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
# protoc's well-known types (google/protobuf/*.proto), which etcd-client's
# build imports: a recommendation of protobuf-compiler, not a dependency.
[ -f /usr/include/google/protobuf/descriptor.proto ] || need+=(libprotobuf-dev)
command -v sysbench >/dev/null 2>&1 || need+=(sysbench)
# The TLS tests make their certificates with the openssl tool.
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# The PROXY protocol test puts a real HAProxy in front of shardgate (and
# the load harness compares against one).
command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
# Applications' drivers (tests/drivers.rs): PHP's mysqlnd, Debian's Python
# with PyMySQL, SQLAlchemy, Django and mysqlclient, Ruby with ActiveRecord
# and the mysql2 gem, MariaDB Connector/J with a JDK to run it, Node.js
# with npm for mysql2, and Go with Debian's go-sql-driver, sqlx and GORM
# (built without modules from /usr/share/gocode).
driver_packages() {
php -r 'exit(extension_loaded("pdo_mysql") && extension_loaded("mysqli") ? 0 : 1);' >/dev/null 2>&1 || need+=(php-cli php-mysql)
/usr/bin/python3 -c 'import pymysql' >/dev/null 2>&1 || need+=(python3-pymysql)
/usr/bin/python3 -c 'import sqlalchemy' >/dev/null 2>&1 || need+=(python3-sqlalchemy)
/usr/bin/python3 -c 'import django' >/dev/null 2>&1 || need+=(python3-django)
/usr/bin/python3 -c 'import MySQLdb' >/dev/null 2>&1 || need+=(python3-mysqldb)
ruby -e 'require "active_record"; require "mysql2"' >/dev/null 2>&1 || need+=(ruby ruby-activerecord ruby-mysql2)
[ -f /usr/share/java/mariadb-java-client.jar ] || need+=(libmariadb-java)
command -v javac >/dev/null 2>&1 || need+=(default-jdk-headless)
command -v npm >/dev/null 2>&1 || need+=(nodejs npm)
command -v go >/dev/null 2>&1 || need+=(golang-go)
local lib
for lib in go-sql-driver/mysql:golang-github-go-sql-driver-mysql-dev \
  jmoiron/sqlx:golang-github-jmoiron-sqlx-dev jinzhu/gorm:golang-github-jinzhu-gorm-dev; do
  [ -d "/usr/share/gocode/src/github.com/${lib%%:*}" ] || need+=("${lib##*:}")
done
}
[ "$drivers" = 1 ] && driver_packages

# mysql2, Sequelize and TypeORM for the Node.js driver tests, at the
# versions package-lock.json names.
node_modules() {
  [ "$drivers" = 1 ] || return 0
  local dir
  dir="$(cd "$(dirname "$0")/.." && pwd)/tests/drivers"
  local m missing=0
  for m in mysql2 sequelize typeorm reflect-metadata; do
    [ -f "$dir/node_modules/$m/package.json" ] || missing=1
  done
  if [ "$missing" = 1 ]; then
    echo "[deps] npm ci in tests/drivers (mysql2, sequelize, typeorm)"
    (cd "$dir" && npm ci --silent --no-audit --no-fund)
  fi
}

if [ ${#need[@]} -eq 0 ]; then
  echo "[deps] all present: mariadb-server mariadb-client etcd-server protobuf-compiler libprotobuf-dev sysbench openssl haproxy$([ "$drivers" = 1 ] && echo " and the drivers' packages")"
  node_modules
  exit 0
fi

echo "[deps] installing: ${need[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${need[@]}"
node_modules
echo "[deps] done"
