#!/usr/bin/env bash
# Mutation testing (cargo-mutants) over the code whose bugs the other suites must catch: the
# engine's core (rebuild, retire, revive), the per-backend state (in-flight counts, failure
# runs, ejections, slow start), the passive-health rules and the hashing walk (eligibility,
# bounded-load capacity).
#
#   scripts/mutants.sh                 every mutant of those files (about 250; a few hours on 2 cores)
#   scripts/mutants.sh --shard 1/4     a quarter of them (cargo-mutants' own sharding)
#   scripts/mutants.sh -F 'report_failure'   only mutants whose name matches
#
# Installs cargo-mutants if it is missing. Tests: the unit tests and the integration suites that
# exercise these files, with proptest cut to 16 cases (each mutant is built and tested once, so
# the subset has to be fast; a mutant it misses is re-checked with the full `cargo test` before
# it is called missed). Results: mutants.out/ (caught.txt, missed.txt, timeout.txt,
# unviable.txt). The current score is in CONTRIBUTING.md.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-mutants >/dev/null || cargo install --locked cargo-mutants
export PROPTEST_CASES="${PROPTEST_CASES:-16}"
# No debug info: each mutant relinks the test binaries, and that is most of a rebuild.
export CARGO_PROFILE_DEV_DEBUG=0
exec cargo mutants --no-shuffle -j 1 --timeout-multiplier 3 \
    -f src/engine/core.rs -f src/engine/state.rs -f src/engine/rules.rs -f src/hash/walk.rs \
    "$@" -- \
    --lib --test reliability --test health --test model --test hashing_model \
    --test hashing_api --test stress --test presets --test engine \
    -- --skip hash_ring_accepts_any_weights
