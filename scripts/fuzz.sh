#!/usr/bin/env bash
# Runs one cargo-fuzz target for a fixed time budget.
#
#   scripts/fuzz.sh TARGET SECONDS      e.g. scripts/fuzz.sh operations 600
#
# Targets (`cargo fuzz list` in fuzz/): operations (arbitrary operation sequences on every
# policy, checked against the target's own model of the documented health rules), parameters
# (hostile parameters and keys), tower (the `lbkit::service` adapter driven by hand: discovery
# changes, readiness, calls, responses). CI (.ci/run) builds them all and runs each for 60 s;
# a long run is 600. Needs `cargo install --locked cargo-fuzz`. cargo-fuzz passes nightly-only
# flags to rustc; on a stable toolchain RUSTC_BOOTSTRAP=1 allows them. Builds with debug
# assertions and overflow checks on (-a), without a sanitizer (-s none: lbkit has no unsafe
# code, and the sanitizer halves the executions per second). A crash leaves its input in
# fuzz/artifacts/TARGET/; replay it with `RUSTC_BOOTSTRAP=1 cargo fuzz run -a -s none TARGET FILE`
# (in fuzz/), and turn it into a unit test. The corpus grows in fuzz/corpus/TARGET/ (not committed;
# cargo-fuzz creates it, so a fresh clone needs nothing). The final statistics (executions,
# exec/s) are printed at the end of the run.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
target=${1:?usage: scripts/fuzz.sh TARGET SECONDS}
seconds=${2:?usage: scripts/fuzz.sh TARGET SECONDS}
export RUSTC_BOOTSTRAP=1
exec cargo fuzz run -a -s none "$target" -- -max_total_time="$seconds" -print_final_stats=1
