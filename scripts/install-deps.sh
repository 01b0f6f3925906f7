#!/usr/bin/env bash
# Installs the Debian packages shardgate's cluster and tests need, if missing.
set -euo pipefail

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

if [ ${#need[@]} -eq 0 ]; then
  echo "[deps] all present: mariadb-server mariadb-client etcd-server protobuf-compiler libprotobuf-dev sysbench openssl haproxy"
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
echo "[deps] done"
