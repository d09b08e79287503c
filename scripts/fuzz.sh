#!/usr/bin/env bash
# Runs one cargo-fuzz target for a fixed time budget.
#
#   scripts/fuzz.sh TARGET SECONDS      e.g. scripts/fuzz.sh operations 600
#
# Targets: operations (arbitrary operation sequences on every policy), parameters (hostile
# parameters and keys). Needs `cargo install cargo-fuzz`. cargo-fuzz passes nightly-only
# flags to rustc; on a stable toolchain RUSTC_BOOTSTRAP=1 allows them. Builds with debug
# assertions and overflow checks on (-a), without a sanitizer (-s none: lbkit has no unsafe
# code, and the sanitizer halves the executions per second). A crash leaves its input in
# fuzz/artifacts/TARGET/; replay it with `RUSTC_BOOTSTRAP=1 cargo fuzz run -a -s none TARGET FILE`
# (in fuzz/), and turn it into a unit test. The corpus grows in fuzz/corpus/TARGET/ (not committed).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
target=${1:?usage: scripts/fuzz.sh TARGET SECONDS}
seconds=${2:?usage: scripts/fuzz.sh TARGET SECONDS}
export RUSTC_BOOTSTRAP=1
exec cargo fuzz run -a -s none "$target" -- -max_total_time="$seconds" -print_final_stats=1
