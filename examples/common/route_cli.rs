//! The logic of `examples/route.rs`, apart from the process, so that `tests/route.rs` can run
//! it in-process with its own input and output.
//!
//! ```text
//! route --algo ALGO --backends ID[=WEIGHT],ID[=WEIGHT],... [--keys FILE|-] [--picks N]
//!       [--hold] [--seed N] [--bound C] [--diff ALGO2]
//! ```
//!
//! Expects the including crate to have the policy table as `crate::policies`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};

use lbkit::{Backend, Balancer, Pick, Request};

use crate::policies::{self, Options};

/// Exit status for bad arguments.
pub const USAGE_ERROR: i32 = 2;
/// Exit status when reading keys or writing output fails midway.
pub const IO_ERROR: i32 = 1;

/// Usage text printed by `--help`.
pub fn usage() -> String {
    let names: Vec<&str> = policies::table::<()>().iter().map(|p| p.name).collect();
    format!(
        "usage: route --algo ALGO --backends ID[=WEIGHT],ID[=WEIGHT],... [--keys FILE|-]
             [--picks N] [--hold] [--seed N] [--bound C] [--diff ALGO2]

Routes keys (one per line; `-` reads stdin) and prints KEY<TAB>ID for each, in input order,
or without --keys makes N picks (default 10) and prints one id per line. An empty id means
no backend was eligible. With --diff, routes every key through ALGO and ALGO2 over the same
backends and prints how many keys move, and per backend its keys before and after and how
many it gains and loses.

  --algo ALGO      one of: {}
  --backends LIST  comma-separated ids, each with an optional =WEIGHT (default 1)
  --keys FILE|-    the keys to route; line endings \\n and \\r\\n are stripped
  --picks N        picks to make without --keys (default 10)
  --hold           keep every pick until the end, so load-aware policies see the load
  --seed N         seed every random choice, so the output replays (default: from
                   entropy; with a seed, peak-ewma's clock stands still)
  --bound C        bounded loads with factor C >= 1 (hashing policies that support it)
  --diff ALGO2     compare ALGO's mapping of --keys with ALGO2's (a migration's cost)
",
        names.join(", ")
    )
}

/// What the command line asks for.
#[derive(Debug, Default)]
struct Args {
    algo: Option<String>,
    backends: Option<Vec<(String, u32)>>,
    keys: Option<OsString>,
    picks: Option<usize>,
    hold: bool,
    seed: Option<u64>,
    bound: Option<f64>,
    diff: Option<String>,
    help: bool,
}

fn text(arg: &OsString) -> Result<&str, String> {
    arg.to_str()
        .ok_or_else(|| format!("argument {arg:?} is not UTF-8"))
}

fn parse_backends(list: &str) -> Result<Vec<(String, u32)>, String> {
    let mut out: Vec<(String, u32)> = Vec::new();
    for item in list.split(',') {
        let (id, weight) = match item.split_once('=') {
            Some((id, w)) => {
                let weight = w.parse::<u32>().map_err(|_| {
                    format!(
                        "bad weight {w:?} for backend {id:?} (an integer from 0 to {})",
                        u32::MAX
                    )
                })?;
                (id, weight)
            }
            None => (item, 1),
        };
        if id.is_empty() {
            return Err(format!("empty backend id in --backends {list:?}"));
        }
        if out.iter().any(|(seen, _)| seen == id) {
            return Err(format!("duplicate backend id {id:?} in --backends"));
        }
        out.push((id.to_string(), weight));
    }
    Ok(out)
}

fn parse(args: &[OsString]) -> Result<Args, String> {
    let mut a = Args::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let arg_text = text(arg)?;
        let (flag, inline) = match arg_text.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(OsString::from(v))),
            _ => (arg_text, None),
        };
        let mut value = || -> Result<OsString, String> {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        fn once<V>(slot: &mut Option<V>, flag: &str, v: V) -> Result<(), String> {
            if slot.replace(v).is_some() {
                return Err(format!("{flag} given twice"));
            }
            Ok(())
        }
        match flag {
            "-h" | "--help" => a.help = true,
            "--hold" if inline.is_none() => a.hold = true,
            "--diff" => {
                let v = value()?;
                once(&mut a.diff, flag, text(&v)?.to_owned())?;
            }
            "--algo" => {
                let v = value()?;
                once(&mut a.algo, flag, text(&v)?.to_string())?;
            }
            "--backends" => {
                let v = value()?;
                once(&mut a.backends, flag, parse_backends(text(&v)?)?)?;
            }
            "--keys" => {
                let v = value()?;
                once(&mut a.keys, flag, v)?;
            }
            "--picks" => {
                let v = value()?;
                let v = text(&v)?;
                let n = v
                    .parse()
                    .map_err(|_| format!("bad --picks {v:?} (a count of picks)"))?;
                once(&mut a.picks, flag, n)?;
            }
            "--seed" => {
                let v = value()?;
                let v = text(&v)?;
                let n = v
                    .parse()
                    .map_err(|_| format!("bad --seed {v:?} (an integer from 0 to 2^64-1)"))?;
                once(&mut a.seed, flag, n)?;
            }
            "--bound" => {
                let v = value()?;
                let v = text(&v)?;
                let c: f64 = v
                    .parse()
                    .ok()
                    .filter(|c: &f64| c.is_finite() && *c >= 1.0)
                    .ok_or_else(|| format!("bad --bound factor {v:?} (a number >= 1)"))?;
                once(&mut a.bound, flag, c)?;
            }
            _ => return Err(format!("unknown argument {arg_text:?} (see --help)")),
        }
    }
    Ok(a)
}

/// Runs the command with `args` (without the program name), reading keys from `stdin` when
/// asked, and returns the exit status. On a usage error, one line goes to `stderr`, nothing to
/// `stdout`, and the status is [`USAGE_ERROR`].
pub fn run(
    args: &[OsString],
    stdin: &mut dyn BufRead,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> i32 {
    let (balancers, args) = match setup(args) {
        Ok(Some(ready)) => ready,
        Ok(None) => {
            return match stdout.write_all(usage().as_bytes()) {
                Ok(()) => 0,
                Err(_) => IO_ERROR,
            }
        }
        Err(message) => {
            let _ = writeln!(stderr, "route: {message}");
            return USAGE_ERROR;
        }
    };
    let lb = balancers.lb.as_ref();
    let route = |input: &mut dyn BufRead, stdout: &mut dyn Write| match &balancers.diff {
        None => keys(lb, input, args.hold, stdout),
        Some((other, lb2)) => {
            let algo = args.algo.as_deref().unwrap_or_default();
            let order = args.backends.as_deref().unwrap_or_default();
            diff((lb, lb2.as_ref()), (algo, other), order, input, stdout)
        }
    };
    let result = match &args.keys {
        None => picks(lb, args.picks.unwrap_or(10), args.hold, stdout),
        Some(path) if path == "-" => route(stdin, stdout),
        Some(path) => match File::open(path) {
            Ok(file) => route(&mut BufReader::with_capacity(1 << 16, file), stdout),
            Err(e) => {
                let _ = writeln!(stderr, "route: cannot read --keys {path:?}: {e}");
                return USAGE_ERROR;
            }
        },
    };
    match result.and_then(|()| stdout.flush()) {
        Ok(()) => 0,
        // The reader went away (`route ... | head`): not an error of ours.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            let _ = writeln!(stderr, "route: {e}");
            IO_ERROR
        }
    }
}

/// The balancers a command line asks for: `--algo`'s, and `--diff`'s if given.
struct Balancers {
    lb: Box<dyn Balancer<()>>,
    diff: Option<(String, Box<dyn Balancer<()>>)>,
}

/// Checks the arguments and builds the balancers; `None` for `--help`.
fn setup(args: &[OsString]) -> Result<Option<(Balancers, Args)>, String> {
    let args = parse(args)?;
    if args.help {
        return Ok(None);
    }
    let algo = args
        .algo
        .as_deref()
        .ok_or_else(|| format!("missing --algo (one of: {})", known()))?;
    let backends = args
        .backends
        .as_ref()
        .ok_or("missing --backends ID[=WEIGHT],...")?;
    if args.keys.is_some() && args.picks.is_some() {
        return Err("--picks and --keys exclude each other (--keys makes one pick per key)".into());
    }
    if args.diff.is_some() && (args.keys.is_none() || args.hold) {
        return Err("--diff compares the mappings of --keys (and excludes --hold)".into());
    }
    let lb = build(algo, backends, &args)?;
    let diff = match &args.diff {
        Some(other) => Some((other.clone(), build(other, backends, &args)?)),
        None => None,
    };
    Ok(Some((Balancers { lb, diff }, args)))
}

fn known() -> String {
    let table = policies::table::<()>();
    table.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
}

/// The balancer `algo` over `backends`, with the seed and bound of `args`.
fn build(
    algo: &str,
    backends: &[(String, u32)],
    args: &Args,
) -> Result<Box<dyn Balancer<()>>, String> {
    let table = policies::table::<()>();
    let policy = table
        .iter()
        .find(|p| p.name == algo)
        .ok_or_else(|| format!("unknown algo {algo:?} (known: {})", known()))?;
    if args.bound.is_some() && !policy.bounded {
        return Err(if policy.hashing {
            format!("--bound is not supported by {algo}")
        } else {
            format!("--bound needs a hashing policy; {algo} does not hash keys")
        });
    }
    let backends = backends
        .iter()
        .map(|(id, w)| Backend::new(id.as_str(), ()).with_weight(*w))
        .collect();
    let options = Options {
        seed: args.seed,
        bound: args.bound,
        // With a seed the output must replay exactly: peak EWMA then reads a clock that
        // stands still (a dropped pick feeds its held time as a latency, which on the
        // system clock depends on how fast this machine runs).
        clock: args.seed.map(|_| lbkit::ManualClock::new()),
        ..Options::default()
    };
    (policy.build)(backends, options).map_err(|e| format!("{algo}: {e}"))
}

/// Routes every key of `input` through `before` and `after` and prints the moved share, then
/// per backend (in `order`): keys before, after, gained, lost. A key with no backend counts
/// under the empty id.
fn diff(
    (before, after): (&dyn Balancer<()>, &dyn Balancer<()>),
    names: (&str, &str),
    order: &[(String, u32)],
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> io::Result<()> {
    #[derive(Default)]
    struct Count {
        before: u64,
        after: u64,
        gained: u64,
        lost: u64,
    }
    let mut counts: BTreeMap<String, Count> = BTreeMap::new();
    let (mut total, mut moved) = (0u64, 0u64);
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        let mut key = line.as_slice();
        if let Some(k) = key.strip_suffix(b"\n") {
            key = k.strip_suffix(b"\r").unwrap_or(k);
        }
        let request = Request::with_key(key);
        let id = |lb: &dyn Balancer<()>| {
            lb.pick(&request)
                .map_or(String::new(), |p| p.id().to_owned())
        };
        let (from, to) = (id(before), id(after));
        total += 1;
        counts.entry(from.clone()).or_default().before += 1;
        counts.entry(to.clone()).or_default().after += 1;
        if from != to {
            moved += 1;
            counts.entry(from).or_default().lost += 1;
            counts.entry(to).or_default().gained += 1;
        }
    }
    let share = if total == 0 {
        0.0
    } else {
        moved as f64 * 100.0 / total as f64
    };
    writeln!(
        out,
        "# {} -> {}: {moved} of {total} keys move ({share:.2}%)",
        names.0, names.1
    )?;
    writeln!(out, "backend\tbefore\tafter\tgained\tlost")?;
    let mut ids: Vec<&str> = order.iter().map(|(id, _)| id.as_str()).collect();
    if counts.contains_key("") {
        ids.push("");
    }
    for id in ids {
        let c = counts
            .get(id)
            .map_or((0, 0, 0, 0), |c| (c.before, c.after, c.gained, c.lost));
        writeln!(out, "{id}\t{}\t{}\t{}\t{}", c.0, c.1, c.2, c.3)?;
    }
    Ok(())
}

fn picks(lb: &dyn Balancer<()>, n: usize, hold: bool, out: &mut dyn Write) -> io::Result<()> {
    let mut held: Vec<Pick<()>> = Vec::new();
    for _ in 0..n {
        let pick = lb.pick(&Request::new());
        out.write_all(pick.as_ref().map_or("", |p| p.id()).as_bytes())?;
        out.write_all(b"\n")?;
        if hold {
            held.extend(pick);
        }
    }
    Ok(())
}

fn keys(
    lb: &dyn Balancer<()>,
    input: &mut dyn BufRead,
    hold: bool,
    out: &mut dyn Write,
) -> io::Result<()> {
    let mut held: Vec<Pick<()>> = Vec::new();
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let mut key = line.as_slice();
        if let Some(k) = key.strip_suffix(b"\n") {
            key = k.strip_suffix(b"\r").unwrap_or(k);
        }
        let pick = lb.pick(&Request::with_key(key));
        out.write_all(key)?;
        out.write_all(b"\t")?;
        out.write_all(pick.as_ref().map_or("", |p| p.id()).as_bytes())?;
        out.write_all(b"\n")?;
        if hold {
            held.extend(pick);
        }
    }
}
