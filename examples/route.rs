//! Route keys (or make picks) through any policy from the command line: the tool to see where
//! a policy sends what, and to check that two processes agree.
//!
//! ```text
//! cargo run --release --example route -- --algo ALGO --backends ID[=WEIGHT],ID[=WEIGHT],...
//!     [--keys FILE|-] [--picks N] [--hold] [--seed N] [--bound C]
//!
//! printf 'user-1\nuser-2\n' | cargo run --example route -- --algo p2c --backends a,b=3 --keys -
//! ```
//!
//! With `--keys`, prints `KEY<TAB>ID` per key in input order; without, makes `--picks` picks
//! (default 10) and prints one id per line. An empty id: no backend was eligible. Bad
//! arguments: one line on stderr, nothing on stdout, exit status 2. `--help` lists the
//! policies. The logic lives in `common/route_cli.rs`, which `tests/route.rs` also runs.

#[path = "common/policies.rs"]
mod policies;
#[path = "common/route_cli.rs"]
mod route_cli;

use std::io::{BufWriter, Write};

fn main() {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut out = BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let mut err = std::io::stderr().lock();
    let status = route_cli::run(&args, &mut input, &mut out, &mut err);
    // Written and flushed by `run`; a failure here was already reported.
    let _ = out.flush();
    std::process::exit(status);
}
