//! `examples/route.rs`, run in-process: the example's logic lives in
//! `examples/common/route_cli.rs`, included here as it is included by the example, so these
//! tests need no built binary and no nested cargo.

#[path = "../examples/common/policies.rs"]
mod policies;
#[path = "../examples/common/route_cli.rs"]
mod route_cli;

use std::collections::HashMap;
use std::ffi::OsString;

/// Runs the command; returns (status, stdout, stderr).
fn route_bytes(args: &[&str], stdin: &[u8]) -> (i32, Vec<u8>, String) {
    let args: Vec<OsString> = args.iter().map(OsString::from).collect();
    let mut input = stdin;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let status = route_cli::run(&args, &mut input, &mut out, &mut err);
    (status, out, String::from_utf8(err).unwrap())
}

fn route(args: &[&str], stdin: &str) -> (i32, String, String) {
    let (status, out, err) = route_bytes(args, stdin.as_bytes());
    (status, String::from_utf8(out).unwrap(), err)
}

fn names() -> Vec<&'static str> {
    policies::table::<()>().iter().map(|p| p.name).collect()
}

fn counts(lines: &str) -> HashMap<&str, usize> {
    let mut c = HashMap::new();
    for l in lines.lines() {
        *c.entry(l.rsplit('\t').next().unwrap()).or_default() += 1;
    }
    c
}

#[test]
fn every_policy_makes_ten_picks_by_default() {
    for algo in names() {
        let (status, out, err) = route(&["--algo", algo, "--backends", "a,b=2,c"], "");
        assert_eq!((status, err.as_str()), (0, ""), "{algo}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 10, "{algo}: {out:?}");
        assert!(
            lines.iter().all(|l| ["a", "b", "c"].contains(l)),
            "{algo}: {out:?}"
        );
    }
}

#[test]
fn picks_follow_the_policy() {
    let (_, out, _) = route(
        &[
            "--algo",
            "round-robin",
            "--backends",
            "c,a,b",
            "--picks",
            "6",
        ],
        "",
    );
    let lines: Vec<&str> = out.lines().collect();
    // Every backend once per round, the same order each round.
    assert_eq!(lines[..3], lines[3..]);
    let mut round = lines[..3].to_vec();
    round.sort_unstable();
    assert_eq!(round, ["a", "b", "c"]);

    let args = [
        "--algo",
        "weighted-round-robin",
        "--backends",
        "a=1,b=3",
        "--picks",
        "8",
    ];
    let (_, out, _) = route(&args, "");
    assert_eq!(counts(&out), HashMap::from([("a", 2), ("b", 6)]));

    // Held picks: least connections balances in flight per unit of weight exactly.
    let args = [
        "--algo",
        "least-connections",
        "--backends",
        "a,b=2",
        "--picks",
        "6",
        "--hold",
    ];
    let (_, out, _) = route(&args, "");
    assert_eq!(counts(&out), HashMap::from([("a", 2), ("b", 4)]));
}

#[test]
fn a_seed_replays_random_choices() {
    for algo in ["random", "p2c", "peak-ewma"] {
        let args = [
            "--algo",
            algo,
            "--backends",
            "a,b,c,d,e,f",
            "--picks",
            "200",
            "--seed",
            "7",
        ];
        let first = route(&args, "");
        assert_eq!(first.0, 0);
        assert_eq!(first, route(&args, ""), "{algo}");
        let other = route(
            &[
                "--seed=8",
                "--picks=200",
                "--algo",
                algo,
                "--backends=a,b,c,d,e,f",
            ],
            "",
        );
        assert_ne!(
            first.1, other.1,
            "{algo}: seeds 7 and 8 gave the same 200 picks"
        );
    }
}

#[test]
fn keys_print_key_tab_id_in_input_order() {
    let input = "user-1\nuser-2\r\n\nwith\ttab\nlast";
    let (status, out, err) = route(
        &["--algo", "round-robin", "--backends", "a", "--keys", "-"],
        input,
    );
    assert_eq!((status, err.as_str()), (0, ""));
    assert_eq!(out, "user-1\ta\nuser-2\ta\n\ta\nwith\ttab\ta\nlast\ta\n");

    // Keys are bytes, not text.
    let (status, out, _) = route_bytes(
        &["--algo", "random", "--backends", "a", "--keys", "-"],
        b"\xff\xfe\r\n",
    );
    assert_eq!((status, out), (0, b"\xff\xfe\ta\n".to_vec()));
}

#[test]
fn keys_from_a_file() {
    let path = std::env::temp_dir().join(format!("lbkit-route-keys-{}.txt", std::process::id()));
    let keys: String = (0..1000).map(|i| format!("key-{i}\r\n")).collect();
    std::fs::write(&path, keys).unwrap();
    let path_arg = path.to_str().unwrap();
    let (status, out, err) = route(
        &[
            "--algo",
            "p2c",
            "--backends",
            "a,b",
            "--keys",
            path_arg,
            "--hold",
        ],
        "",
    );
    std::fs::remove_file(&path).unwrap();
    assert_eq!((status, err.as_str()), (0, ""));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1000);
    for (i, line) in lines.iter().enumerate() {
        let (key, id) = line.split_once('\t').unwrap();
        assert_eq!(key, format!("key-{i}"));
        assert!(id == "a" || id == "b");
    }
    // Held picks: P2C keeps the two backends close.
    let c = counts(&out);
    assert!(c["a"].abs_diff(c["b"]) <= 1, "{c:?}");
}

#[test]
fn no_eligible_backend_prints_an_empty_id() {
    let (status, out, _) = route(
        &[
            "--algo",
            "least-connections",
            "--backends",
            "a=0,b=0",
            "--picks",
            "2",
        ],
        "",
    );
    assert_eq!((status, out.as_str()), (0, "\n\n"));
    let (status, out, _) = route(
        &["--algo", "p2c", "--backends", "a=0", "--keys", "-"],
        "k1\nk2\n",
    );
    assert_eq!((status, out.as_str()), (0, "k1\t\nk2\t\n"));
}

#[test]
fn bad_arguments_exit_2_with_one_line_and_no_output() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--algo", "nope", "--backends", "a"],
            "unknown algo \"nope\"",
        ),
        (&["--backends", "a"], "missing --algo"),
        (&["--algo", "p2c"], "missing --backends"),
        (
            &["--algo", "p2c", "--backends", "a,b,a"],
            "duplicate backend id \"a\"",
        ),
        (&["--algo", "p2c", "--backends", "a,,b"], "empty backend id"),
        (&["--algo", "p2c", "--backends", "=3"], "empty backend id"),
        (&["--algo", "p2c", "--backends", "a=x"], "bad weight \"x\""),
        (
            &["--algo", "p2c", "--backends", "a=-1"],
            "bad weight \"-1\"",
        ),
        (
            &["--algo", "p2c", "--backends", "a=1.5"],
            "bad weight \"1.5\"",
        ),
        (
            &["--algo", "p2c", "--backends", "a=4294967296"],
            "bad weight",
        ),
        (
            &["--algo", "p2c", "--backends", "a", "--bound", "1.25"],
            "--bound needs a hashing policy",
        ),
        (
            &["--algo", "round-robin", "--backends", "a", "--bound", "0.5"],
            "bad --bound factor \"0.5\"",
        ),
        (
            &["--algo", "round-robin", "--backends", "a", "--bound", "NaN"],
            "bad --bound factor",
        ),
        (
            &["--algo", "round-robin", "--backends", "a", "--bound", "inf"],
            "bad --bound factor",
        ),
        (
            &["--algo", "round-robin", "--backends", "a", "--bound", "x"],
            "bad --bound factor",
        ),
        (
            &["--algo", "p2c", "--backends", "a", "--picks", "-1"],
            "bad --picks",
        ),
        (
            &["--algo", "p2c", "--backends", "a", "--seed", "x"],
            "bad --seed",
        ),
        (
            &[
                "--algo",
                "p2c",
                "--backends",
                "a",
                "--picks",
                "3",
                "--keys",
                "-",
            ],
            "exclude each other",
        ),
        (
            &["--algo", "p2c", "--algo", "random", "--backends", "a"],
            "--algo given twice",
        ),
        (
            &["--algo", "p2c", "--backends", "a", "--frobnicate"],
            "unknown argument \"--frobnicate\"",
        ),
        (&["--algo", "p2c", "--backends"], "--backends needs a value"),
        (
            &[
                "--algo",
                "p2c",
                "--backends",
                "a",
                "--keys",
                "/nonexistent/lbkit/keys",
            ],
            "cannot read --keys",
        ),
    ];
    for (args, expected) in cases {
        let (status, out, err) = route(args, "k\n");
        assert_eq!(status, 2, "{args:?}");
        assert_eq!(out, "", "{args:?}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err:?}");
        assert!(err.starts_with("route: "), "{args:?}: {err:?}");
        assert!(
            err.contains(expected),
            "{args:?}: {err:?} lacks {expected:?}"
        );
    }
}

#[test]
fn help_lists_every_policy() {
    let (status, out, err) = route(&["--help"], "");
    assert_eq!((status, err.as_str()), (0, ""));
    for name in names() {
        assert!(out.contains(name), "{name} missing from --help");
    }
}

#[test]
fn many_keys_stream_through() {
    let input: String = (0..50_000).map(|i| format!("{i}\n")).collect();
    let (status, out, _) = route(
        &[
            "--algo",
            "weighted-round-robin",
            "--backends",
            "a,b=3",
            "--keys",
            "-",
        ],
        &input,
    );
    assert_eq!(status, 0);
    assert_eq!(out.lines().count(), 50_000);
    let c = counts(&out);
    assert_eq!((c["a"], c["b"]), (12_500, 37_500));
}

#[test]
fn diff_counts_the_keys_that_move_between_two_mappings() {
    // nginx -> gRPC ring_hash for 10 equal servers over 100,000 keys: the moved share and the
    // per-backend gains and losses, against a count made here from two plain runs (each
    // mapping checked key for key elsewhere: nginx against real nginx, gRPC against the
    // independent model, tests/presets.rs).
    let servers: Vec<String> = (1..=10).map(|i| format!("10.0.0.{i}:80")).collect();
    let list = servers.join(",");
    let keys: String = (0..100_000).map(|i| format!("/user/{i}\n")).collect();
    let plain = |algo: &str| {
        let (status, out, err) =
            route(&["--algo", algo, "--backends", &list, "--keys", "-"], &keys);
        assert_eq!((status, err.as_str()), (0, ""));
        out.lines()
            .map(|l| l.rsplit('\t').next().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let (before, after) = (plain("nginx"), plain("grpc-ring-hash"));
    assert_eq!(before.len(), 100_000);
    let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
    let (status, out, err) = route(
        &[
            "--algo",
            "nginx",
            "--diff",
            "grpc-ring-hash",
            "--backends",
            &list,
            "--keys",
            "-",
        ],
        &keys,
    );
    assert_eq!((status, err.as_str()), (0, ""));
    let mut lines = out.lines();
    let share = moved as f64 * 100.0 / 100_000.0;
    assert_eq!(
        lines.next().unwrap(),
        format!("# nginx -> grpc-ring-hash: {moved} of 100000 keys move ({share:.2}%)")
    );
    assert_eq!(
        lines.next().unwrap(),
        "backend\tbefore\tafter\tgained\tlost"
    );
    // Two unrelated mappings of 10 equal servers: about 9 keys in 10 move.
    assert!((85.0..95.0).contains(&share), "{share}");
    for (line, id) in lines.zip(&servers) {
        let count = |of: &[String]| of.iter().filter(|s| *s == id).count();
        let gained = before
            .iter()
            .zip(&after)
            .filter(|(b, a)| b != a && *a == id)
            .count();
        let lost = before
            .iter()
            .zip(&after)
            .filter(|(b, a)| b != a && *b == id)
            .count();
        assert_eq!(
            line,
            format!(
                "{id}\t{}\t{}\t{gained}\t{lost}",
                count(&before),
                count(&after)
            )
        );
    }
    // The same mapping on both sides moves nothing.
    let (_, same, _) = route(
        &[
            "--algo",
            "maglev",
            "--diff",
            "maglev",
            "--backends",
            &list,
            "--keys",
            "-",
        ],
        &keys,
    );
    assert!(
        same.starts_with("# maglev -> maglev: 0 of 100000 keys move (0.00%)"),
        "{same}"
    );
}

#[test]
fn diff_needs_keys() {
    let (status, out, err) = route(
        &["--algo", "nginx", "--diff", "ring", "--backends", "a,b"],
        "",
    );
    assert_eq!((status, out.as_str()), (route_cli::USAGE_ERROR, ""));
    assert!(err.contains("--diff"), "{err}");
    let (status, _, err) = route(
        &[
            "--algo",
            "nginx",
            "--diff",
            "nope",
            "--backends",
            "a",
            "--keys",
            "-",
        ],
        "k\n",
    );
    assert_eq!(status, route_cli::USAGE_ERROR);
    assert!(err.contains("unknown algo \"nope\""), "{err}");
}
