#!/usr/bin/env bash
# Run a fuzzing campaign: every target (or the ones named) for N seconds each, one after the
# other, with visible progress, then print a table (target, execs, exec/s, corpus, new, crashes).
#
#   fuzz/campaign.sh N_SECONDS [--merge] [target ...]
#
# * Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz --locked`).
# * Each target reads the committed corpus fuzz/corpus/<target>/ and writes what it finds to a
#   scratch directory (fuzz/target/campaign/corpus/<target>/), so the committed corpus only
#   changes with --merge, which adds just the inputs that raise coverage (libFuzzer -merge=1).
# * Crashes, leaks, timeouts and OOMs land in fuzz/artifacts/<target>/ (cargo-fuzz's place);
#   add a fixed crash to fuzz/corpus/<target>/ as a regression case.
# * Memory is bounded: -rss_limit_mb (whole process) and -malloc_limit_mb (one allocation).
#   Override with RSS_LIMIT_MB / MALLOC_LIMIT_MB; JOBS=n runs n workers per target.
# * BINDIR=dir runs already-built binaries from dir (no build step).
set -euo pipefail
cd "$(dirname "$0")"

usage() { echo "usage: $0 N_SECONDS [--merge] [target ...]" >&2; exit 2; }
[ $# -ge 1 ] || usage
secs=$1; shift
[[ $secs =~ ^[0-9]+$ ]] || usage
merge=0
targets=()
for a in "$@"; do
  case $a in
    --merge) merge=1 ;;
    -*) usage ;;
    *) targets+=("$a") ;;
  esac
done
if [ ${#targets[@]} -eq 0 ]; then
  for f in fuzz_targets/*.rs; do targets+=("$(basename "$f" .rs)"); done
fi

RSS_LIMIT_MB=${RSS_LIMIT_MB:-2048}
MALLOC_LIMIT_MB=${MALLOC_LIMIT_MB:-256}
JOBS=${JOBS:-1}
work=target/campaign
mkdir -p "$work/logs" "$work/corpus"

command -v cargo-fuzz >/dev/null 2>&1 || {
  echo "cargo-fuzz is missing: cargo install cargo-fuzz --locked" >&2; exit 1; }

if [ -z "${BINDIR:-}" ]; then
echo "== building ${#targets[@]} targets (cargo +nightly fuzz build, log $work/logs/build.log)"
: >"$work/logs/build.log"
for t in "${targets[@]}"; do
  if ! cargo +nightly fuzz build "$t" >>"$work/logs/build.log" 2>&1; then
    tail -n 30 "$work/logs/build.log" >&2; exit 1
  fi
done
fi

# Run the built binaries directly, so editing the sources during a campaign does not make
# `cargo fuzz run` rebuild in the middle of it.
triple=$(rustc +nightly -vV | sed -n 's/^host: //p')
bindir=${BINDIR:-target/$triple/release}

par=()
[ "$JOBS" -gt 1 ] && par=(-jobs="$JOBS" -workers="$JOBS")

rows=()
total_start=$(date +%s)
for i in "${!targets[@]}"; do
  t=${targets[$i]}
  corpus=corpus/$t
  scratch=$work/corpus/$t
  log=$work/logs/$t.log
  mkdir -p "$corpus" "$scratch" "artifacts/$t"
  before_art=$(find "artifacts/$t" -type f | wc -l)
  before_new=$(find "$scratch" -type f | wc -l)
  echo "== [$((i + 1))/${#targets[@]}] $t: ${secs}s, seeds $(find "$corpus" -type f | wc -l), log $log"
  start=$(date +%s)
  set +e
  "$bindir/$t" -artifact_prefix="artifacts/$t/" \
    -max_total_time="$secs" -rss_limit_mb="$RSS_LIMIT_MB" -malloc_limit_mb="$MALLOC_LIMIT_MB" \
    -timeout=10 -print_final_stats=1 "${par[@]}" "$scratch" "$corpus" >"$log" 2>&1 &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 10
    line=$( (grep -aE '^#[0-9]+' "$log" || true) | tail -n 1 | cut -c1-110)
    printf '   %4ss  %s\n' "$(( $(date +%s) - start ))" "${line:-(starting)}"
  done
  wait "$pid"; rc=$?
  set -e
  # Final stats are missing when the run stops on a crash: then take the last status line.
  execs=$( (grep -a 'stat::number_of_executed_units' "$log" || true) | awk '{s += $2} END {print s + 0}')
  if [ "$execs" = 0 ]; then
    execs=$( (grep -aoE '^#[0-9]+' "$log" || true) | tail -n 1 | tr -d '#')
    execs=${execs:-0}
  fi
  elapsed=$(( $(date +%s) - start ))
  rate=$(( execs / (elapsed > 0 ? elapsed : 1) ))
  new=$(( $(find "$scratch" -type f | wc -l) - before_new ))
  if [ "$merge" = 1 ] && [ "$new" -gt 0 ]; then
    "$bindir/$t" -merge=1 -rss_limit_mb="$RSS_LIMIT_MB" -malloc_limit_mb="$MALLOC_LIMIT_MB" \
      "$corpus" "$scratch" >>"$log" 2>&1 || true
  fi
  size=$(find "$corpus" -type f | wc -l)
  crashes=$(( $(find "artifacts/$t" -type f | wc -l) - before_art ))
  status=ok
  [ "$rc" -ne 0 ] && status="exit $rc"
  [ "$crashes" -gt 0 ] && status="CRASH (see artifacts/$t)"
  rows+=("$(printf '%-24s %12s %9s %8s %6s %8s  %s' "$t" "$execs" "$rate" "$size" "$new" "$crashes" "$status")")
  echo "   done: $execs execs, $new new inputs, $crashes crash files, $status"
done

echo
echo "== campaign: ${secs}s per target, $(( $(date +%s) - total_start ))s total, $(date -u +%FT%TZ)"
printf '%-24s %12s %9s %8s %6s %8s  %s\n' target execs exec/s corpus new crashes status
for r in "${rows[@]}"; do echo "$r"; done
