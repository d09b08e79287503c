#!/usr/bin/env bash
# Mutation testing (cargo-mutants) over the code whose bugs the other suites must catch: the
# engine's core (rebuild, retire, revive, subsets, events), the per-backend state (in-flight
# counts, failure runs, ejections, slow start, failures as load), the passive-health rules
# (with soft health's sweep), the subset rules and the hashing walk (eligibility, bounded-load
# capacity).
#
#   scripts/mutants.sh                       every mutant of those files, fast test subset
#   scripts/mutants.sh --shard 1/4           a quarter of them (cargo-mutants' own sharding)
#   scripts/mutants.sh --full -F 'rules.rs'  only mutants whose name matches, whole suite
#
# Two passes: the fast subset (below) over every mutant, then `--full` (the whole
# `cargo test --all-features`) over the ones it missed, with `-F` naming them; a mutant is
# missed only if the full suite misses it. Installs cargo-mutants if it is missing. Results:
# mutants.out/ (caught.txt, missed.txt, timeout.txt, unviable.txt); the current score and
# every survivor's reason are in CONTRIBUTING.md.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-mutants >/dev/null || cargo install --locked cargo-mutants
# Proptest cut to 16 cases: each mutant is built and tested once, so the subset has to be fast.
export PROPTEST_CASES="${PROPTEST_CASES:-16}"
# No debug info: each mutant relinks the test binaries, and that is most of a rebuild.
export CARGO_PROFILE_DEV_DEBUG=0
files=(-f src/engine/core.rs -f src/engine/state.rs -f src/engine/rules.rs -f src/engine/soft.rs
    -f src/subset.rs -f src/engine/subset.rs -f src/hash/walk.rs)
if [ "${1:-}" = "--full" ]; then
    shift
    exec cargo mutants --no-shuffle -j 1 --timeout-multiplier 3 "${files[@]}" "$@" -- --all-features
fi
exec cargo mutants --no-shuffle -j 1 --timeout-multiplier 3 "${files[@]}" "$@" -- \
    --lib --test reliability --test health --test model --test hashing_model \
    --test hashing_api --test stress --test presets --test engine --test bounded_loads --test steering --test ejection_regressions \
    --test statistical_ejection --test failure_penalty --test failure_classes \
    --test failure_load --test soft_health --test subsetting --test observe --test review_regressions \
    -- --skip hash_ring_accepts_any_weights
