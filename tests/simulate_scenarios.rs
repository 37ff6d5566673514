//! `rask-store simulate` at scale S: every scenario behaves as the semantic
//! hash caching design requires, and the same seed gives the same counts.

mod common;

use std::process::Command;

use common::{bin, stderr, stdout};

fn simulate(seed: &str) -> Vec<String> {
    let out = Command::new(bin())
        .args([
            "simulate",
            "--scale",
            "S",
            "--seed",
            seed,
            "--jit-entries",
            "100",
            "--json",
        ])
        .env_remove("RASK_STORE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "simulate failed:\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out).lines().map(String::from).collect()
}

/// The JSON line with the fields that must not depend on timing.
fn counts(line: &str) -> String {
    line.split(',')
        .filter(|field| !field.starts_with("\"wall_ms\"") && !field.starts_with("\"store_ms\""))
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn every_scenario_matches_the_design_and_runs_are_reproducible() {
    let first = simulate("7");
    let names = [
        "cold build",
        "no-op rebuild",
        "cosmetic edit",
        "leaf body edit",
        "edit in a recursive group",
        "type definition edit",
        "upstream signature change",
        "compiler upgrade + gc of the old namespace",
        "two compilers alternating",
        "JIT session (3 parts per expression)",
        "3 builder processes + gc on one store",
    ];
    assert_eq!(first.len(), names.len(), "{first:#?}");
    for (line, name) in first.iter().zip(names) {
        assert!(
            line.contains(&format!(r#""scenario":"{name}","ok":true"#)),
            "{line}"
        );
    }
    // A cosmetic edit rebuilds nothing but the edited files' parse tier.
    let cosmetic = &first[2];
    assert!(
        cosmetic.contains(r#""function_misses":0,"instance_misses":0,"comptime_misses":0"#),
        "{cosmetic}"
    );
    // The no-op rebuild looks nothing up.
    assert!(first[1].contains(r#""lookups":0"#), "{}", first[1]);
    // Three builder processes and gc shared the store: each builder's
    // results were right, and verify found the store clean.
    let concurrent = &first[10];
    for role in ["build", "test", "check"] {
        assert!(concurrent.contains(&format!("{role}: ok ")), "{concurrent}");
    }
    assert!(concurrent.contains("verify: clean"), "{concurrent}");

    let second = simulate("7");
    // Which of two racing builders compiles a key first is up to the
    // scheduler, so the concurrency scenario's counts are left out.
    let a: Vec<String> = first[..10].iter().map(|l| counts(l)).collect();
    let b: Vec<String> = second[..10].iter().map(|l| counts(l)).collect();
    assert_eq!(a, b, "the same seed gave different hit/miss counts");
    assert!(second[10].contains(r#""ok":true"#), "{}", second[10]);
}
