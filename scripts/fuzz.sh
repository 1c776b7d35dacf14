#!/usr/bin/env bash
# Builds idgate's fuzz targets (fuzz/, cargo-fuzz on stable Rust, so `--sanitizer none`) and runs
# each for a bounded time. Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#   SECONDS_PER_TARGET  default 20
#   TARGET              default: every target in fuzz/Cargo.toml
#
# Each run reads the committed seeds in fuzz/corpus/<target> and writes what it discovers to a
# scratch corpus (fuzz/scratch/<target>, ignored by git), so the committed corpus changes only
# when someone merges into it on purpose (fuzz/README.md). Exits non-zero on the first crash,
# panic, failed assertion, timeout or out-of-memory, printing the input that caused it.
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${1:-20}
[[ $SECS =~ ^[0-9]+$ ]] || { echo "usage: $0 [SECONDS_PER_TARGET] [TARGET...]" >&2; exit 2; }
shift || true

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz..."
  cargo install cargo-fuzz --locked --version "^0.13" --quiet
fi

if [[ $# -gt 0 ]]; then
  TARGETS=("$@")
else
  mapfile -t TARGETS < <(cargo fuzz list)
fi

# Stable Rust has no sanitizers; the targets still catch panics, failed assertions, timeouts and
# runaway memory. cargo-fuzz builds in release mode with debug assertions.
if [[ ${#TARGETS[@]} -eq 1 ]]; then
  cargo fuzz build --sanitizer none "${TARGETS[0]}"
else
  cargo fuzz build --sanitizer none
fi

for t in "${TARGETS[@]}"; do
  scratch=fuzz/scratch/$t
  log=fuzz/scratch/$t.log
  rm -rf "$scratch"
  mkdir -p "$scratch"
  # The words the grammars compare against (attribute names, operators, OIDs) are hard to guess.
  dict=()
  [[ -f fuzz/dict/$t.dict ]] && dict=(-dict="$PWD/fuzz/dict/$t.dict")
  # libFuzzer adds new inputs to the first corpus directory and only reads the others.
  if cargo fuzz run --sanitizer none "$t" "$scratch" "fuzz/corpus/$t" -- "${dict[@]}" \
    -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
    echo "fuzz $t: ok, ${runs:-?} inputs in ${SECS}s, $cov"
  else
    echo "fuzz $t: FAILED (full log: $log)" >&2
    grep -m 1 -A 1 -E 'panicked at|ERROR: libFuzzer' "$log" >&2 || tail -n 30 "$log" >&2
    artifact=$(sed -n 's/.*Test unit written to \([^ ]*\).*/\1/p' "$log" | tail -n 1)
    if [[ -n $artifact ]]; then
      echo "crashing input: $artifact" >&2
      echo "replay:         cargo fuzz run --sanitizer none $t $artifact" >&2
    fi
    exit 1
  fi
done
