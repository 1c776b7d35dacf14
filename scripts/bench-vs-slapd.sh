#!/usr/bin/env bash
# Sends the same LDAP load (benches/ldap_search.rs) to OpenLDAP slapd (back-mdb) and to an idgate
# process holding the same 10 000 users, alternating runs so both see the same machine noise.
# Only the ratios within one run of this script are meaningful.
# Usage: scripts/bench-vs-slapd.sh [rounds]   (env: BENCH_USERS, BENCH_CLIENTS, BENCH_SECONDS)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-2}
export BENCH_USERS=${BENCH_USERS:-10000}

if ! command -v slapd >/dev/null && [[ ! -x /usr/sbin/slapd ]]; then
  sudo=""; [[ $(id -u) -ne 0 ]] && sudo=sudo
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq slapd ldap-utils >/dev/null
fi
SLAPD=$(command -v slapd || echo /usr/sbin/slapd)
SLAPADD=$(command -v slapadd || echo /usr/sbin/slapadd)
SLAPPASSWD=$(command -v slappasswd || echo /usr/sbin/slappasswd)

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

cargo build --release --quiet
cargo bench --bench ldap_search --no-run --quiet 2>/dev/null
bench() { cargo bench --quiet --bench ldap_search; }

# slapd with back-mdb, equality indexes like idgate's
mkdir -p "$work/db"
cat >"$work/slapd.conf" <<CONF
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/nis.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile $work/slapd.pid
loglevel 0
database mdb
maxsize 1073741824
suffix "dc=example,dc=com"
rootdn "cn=admin,dc=example,dc=com"
rootpw bench-admin
directory $work/db
index objectClass eq
index uid,mail eq
CONF
BENCH_PW_HASH=$("$SLAPPASSWD" -s bench-password) BENCH_WRITE_LDIF="$work/users.ldif" bench
"$SLAPADD" -q -f "$work/slapd.conf" -l "$work/users.ldif"
"$SLAPD" -f "$work/slapd.conf" -h ldap://127.0.0.1:3390/ -d 0 >/dev/null 2>&1 &
pids+=($!)

# idgate with the same users
BENCH_WRITE_SEED="$work/seed.json" bench
cat >"$work/idgate.toml" <<CONF
[log]
level = "warn"
[ldap]
listen = "127.0.0.1:3391"
[[ldap.service_accounts]]
name = "reader"
password = "bench-reader"
access = "read"
[http]
listen = "127.0.0.1:0"
[bind_throttle]
max_failures_per_address = 0
[backend]
kind = "memory"
seed = "seed.json"
CONF
target/release/idgate serve --config "$work/idgate.toml" &
pids+=($!)

for port in 3390 3391; do
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.2; done
done

for r in $(seq "$ROUNDS"); do
  echo "== round $r: slapd (back-mdb)"
  BENCH_TARGET=127.0.0.1:3390 BENCH_BIND_DN=cn=admin,dc=example,dc=com BENCH_BIND_PW=bench-admin bench
  echo "== round $r: idgate"
  BENCH_TARGET=127.0.0.1:3391 BENCH_BIND_DN=cn=reader,ou=services,dc=example,dc=com BENCH_BIND_PW=bench-reader bench
done
echo "== resident memory after the runs (KiB)"
for p in "${pids[@]}"; do ps -o rss=,comm= -p "$p"; done
