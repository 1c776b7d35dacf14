#!/usr/bin/env bash
# Runs two SCIM 2.0 compliance testers against idgate's demo directory: scim2-tester (through
# scim2-cli's `scim2 test`) and `scim-sanity probe`. Installs them into a Python venv under target/,
# starts idgate with a copy of config/demo.toml on free loopback ports and a fresh state file, and
# exits non-zero on any unexpected failure.
#
# One failure is expected and allowed: scim-sanity's group "add member" step PATCHes the member
# id "fake-member-id", which idgate refuses with 400 invalidValue because no such user exists
# (a gateway must not store a dangling member). The script checks that refusal happened that way.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=target/scim-venv
if [[ ! -x $VENV/bin/scim2 || ! -x $VENV/bin/scim-sanity ]]; then
  rm -rf "$VENV"
  if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
    echo "installing python3-venv..."
    sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
    $sudo apt-get install -y -qq python3-venv >/dev/null 2>&1 || { $sudo apt-get update -qq >/dev/null && $sudo apt-get install -y -qq python3-venv >/dev/null; }
    rm -rf "$VENV"; python3 -m venv "$VENV"
  fi
  "$VENV/bin/pip" install -q scim2-tester==0.5.2 scim2-cli==0.6.0 scim-sanity==0.7.4
fi

# The binary under test: IDGATE_BIN, or a debug build of this tree (quick when cargo test just ran).
BIN=${IDGATE_BIN:-}
if [[ -z $BIN ]]; then
  cargo build --locked -q
  BIN=target/debug/idgate
fi

WORK=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
LDAP_PORT=$(free_port)
HTTP_PORT=$(free_port)
sed -e "s/^listen = \"127.0.0.1:3389\".*/listen = \"127.0.0.1:$LDAP_PORT\"/" \
    -e "s/^listen = \"127.0.0.1:8080\".*/listen = \"127.0.0.1:$HTTP_PORT\"/" \
    -e "s#^seed = .*#seed = \"$PWD/config/demo-directory.json\"#" \
    -e "s#^state_path = .*#state_path = \"state.redb\"#" \
    config/demo.toml > "$WORK/demo.toml"

"$BIN" serve --config "$WORK/demo.toml" > "$WORK/idgate.log" 2>&1 &
PID=$!
cleanup() { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$HTTP_PORT/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -sf "http://127.0.0.1:$HTTP_PORT/readyz" >/dev/null || { echo "idgate did not start"; cat "$WORK/idgate.log"; exit 1; }

BASE="http://127.0.0.1:$HTTP_PORT/scim/v2"
TOKEN=demo-token
status=0

# scim2-tester: one line per check, "<STATUS> <check>".
SCIM_CLI_HEADERS="Authorization: Bearer $TOKEN" "$VENV/bin/scim2" --url "$BASE" test > "$WORK/scim2.out" 2>&1 || true
ok=$(grep -cE '^(SUCCESS|COMPLIANT|ACCEPTABLE)\b' "$WORK/scim2.out" || true)
skipped=$(grep -cE '^SKIPPED\b' "$WORK/scim2.out" || true)
bad=$(grep -cE '^(ERROR|CRITICAL|DEVIATION)\b' "$WORK/scim2.out" || true)
echo "scim2-tester: $ok passed, $bad failed, $skipped skipped"
if [[ $bad -ne 0 || $ok -eq 0 ]]; then
  grep -vE '^(SUCCESS|SKIPPED|COMPLIANT|ACCEPTABLE)\b' "$WORK/scim2.out" | head -50
  status=1
fi

# scim-sanity: "[PASS]/[FAIL]/..." per step and an "N passed, N failed, N skipped" summary.
"$VENV/bin/scim-sanity" probe "$BASE" --token "$TOKEN" --i-accept-side-effects > "$WORK/sanity.out" 2>&1 || true
fails=$(grep -F '[FAIL]' "$WORK/sanity.out" || true)
unexpected=$(printf '%s\n' "$fails" | grep -v '^$' | grep -viE 'add member' || true)
expected=$(printf '%s\n' "$fails" | grep -iE 'add member' || true)
summary=$(grep -E '[0-9]+ passed, [0-9]+ failed' "$WORK/sanity.out" | tail -1 || true)
echo "scim-sanity: ${summary:-no summary}"
if [[ -z $summary ]]; then cat "$WORK/sanity.out"; status=1; fi
if [[ -n $unexpected ]]; then echo "unexpected scim-sanity failures:"; echo "$unexpected"; status=1; fi
if [[ -n $expected ]]; then
  # The allowed exception must be idgate's deliberate refusal, not some other failure.
  if grep -iA2 'add member' "$WORK/sanity.out" | grep -qE 'got 400'; then
    echo "scim-sanity: the add-member step with fake-member-id was refused with 400 (expected)"
  else
    echo "scim-sanity: add-member failed, but not with the expected 400:"; grep -iA3 'add member' "$WORK/sanity.out"; status=1
  fi
fi
exit $status
