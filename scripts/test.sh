#!/usr/bin/env bash
# Runs idgate's whole test suite: installs the system tools the tests drive (OpenLDAP's client
# tools) when they are missing, then runs `cargo test`, a short run of every fuzz target, and the
# SCIM compliance testers. Usage: scripts/test.sh [cargo test args]
# FUZZ_SECONDS sets the seconds per fuzz target (default 15; 0 skips fuzzing).
set -euo pipefail
cd "$(dirname "$0")/.."

need() { # need BINARY DEBIAN_PACKAGE
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "installing $2 (for $1)..."
  local sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  $sudo apt-get install -y -qq "$2" >/dev/null 2>&1 || { $sudo apt-get update -qq >/dev/null && $sudo apt-get install -y -qq "$2" >/dev/null; }
  command -v "$1" >/dev/null 2>&1 || { echo "cannot install $2; install it and retry" >&2; exit 1; }
}

need ldapsearch ldap-utils

cargo test --locked "$@"
if [[ ${FUZZ_SECONDS:-15} -gt 0 ]]; then
  scripts/fuzz.sh "${FUZZ_SECONDS:-15}"   # every fuzz target from its committed corpus (fuzz/README.md)
fi
scripts/scim-compliance.sh   # SCIM compliance testers (Python venv under target/) against the demo
