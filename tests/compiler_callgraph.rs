//! Merkle hashing over call graphs: propagation, recursive groups,
//! determinism, and scale.

use std::collections::{BTreeSet, VecDeque};

use rask_store::Error;
use rask_store::compiler::{
    CallGraphHashes, ExternalCallee, FunctionNode, SemanticHash, SemanticHasher, hash_call_graph,
};

/// A small seeded generator (SplitMix64), so every run sees the same graphs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

fn body(text: &str) -> SemanticHash {
    let mut h = SemanticHasher::new();
    h.begin_node("body");
    h.literal_str(text);
    h.end_node();
    h.finish().expect("balanced")
}

fn fn_node(id: &str, text: &str, callees: &[&str]) -> FunctionNode {
    FunctionNode {
        id: id.into(),
        body_hash: body(text),
        callees: callees.iter().map(|c| c.to_string()).collect(),
        external_callees: vec![],
    }
}

/// A random package: mostly "downward" calls (like layered code), rings of
/// 2 to 8 functions that call each other in a cycle (recursive groups, some
/// of them merged by the random edges), and a few self-recursive functions.
fn generate(rng: &mut Rng, n: usize) -> Vec<FunctionNode> {
    let mut callees: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, list) in callees.iter_mut().enumerate() {
        for _ in 0..rng.below(4) {
            if i + 1 < n {
                list.push(i + 1 + rng.below(n - i - 1));
            }
        }
        if rng.below(50) == 0 {
            list.push(i);
        }
    }
    for _ in 0..n / 40 {
        let start = rng.below(n);
        let len = 2 + rng.below(7);
        let end = (start + len - 1).min(n - 1);
        for (i, list) in callees.iter_mut().enumerate().take(end).skip(start) {
            list.push(i + 1);
        }
        if end > start {
            callees[end].push(start);
        }
    }
    callees
        .into_iter()
        .enumerate()
        .map(|(i, list)| FunctionNode {
            id: format!("f{i}"),
            body_hash: body(&format!("body {i}")),
            callees: list.into_iter().map(|c| format!("f{c}")).collect(),
            external_callees: vec![],
        })
        .collect()
}

/// Every function that reaches `start` (including `start`), by BFS over
/// reverse call edges.
fn reverse_reachable(functions: &[FunctionNode], start: &str) -> BTreeSet<String> {
    let mut callers: std::collections::HashMap<&str, Vec<&str>> = Default::default();
    for f in functions {
        for c in &f.callees {
            callers.entry(c.as_str()).or_default().push(f.id.as_str());
        }
    }
    let mut seen = BTreeSet::from([start.to_string()]);
    let mut queue = VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        for &caller in callers.get(v).map(Vec::as_slice).unwrap_or(&[]) {
            if seen.insert(caller.to_string()) {
                queue.push_back(caller);
            }
        }
    }
    seen
}

fn changed(before: &CallGraphHashes, after: &CallGraphHashes) -> BTreeSet<String> {
    before
        .functions()
        .iter()
        .zip(after.functions())
        .filter(|(a, b)| a.hash != b.hash)
        .map(|(a, _)| a.id.clone())
        .collect()
}

#[test]
fn seed_example_sort_swap_compare() {
    // sort<T> -> swap -> compare, plus an unrelated function.
    let package = |compare: &str| {
        vec![
            fn_node("sort", "sort<T> body", &["swap"]),
            fn_node("swap", "swap body", &["compare"]),
            fn_node("compare", compare, &[]),
            fn_node("unrelated", "unrelated body", &[]),
        ]
    };
    let before = hash_call_graph(&package("a < b")).unwrap();
    let after = hash_call_graph(&package("a > b")).unwrap();
    assert_eq!(
        changed(&before, &after),
        BTreeSet::from(["compare".into(), "swap".into(), "sort".into()])
    );
}

#[test]
fn body_change_reaches_exactly_the_transitive_callers() {
    let mut rng = Rng(0x5eed_0001);
    let n = 3000;
    let functions = generate(&mut rng, n);
    let before = hash_call_graph(&functions).unwrap();
    assert!(
        before.recursive_groups().count() > 5,
        "the generated graph should contain recursive groups"
    );

    // Leaves first (functions that call nothing), then arbitrary ones,
    // including members of recursive groups.
    let mut picks: Vec<usize> = (0..n)
        .filter(|&i| functions[i].callees.is_empty())
        .take(10)
        .collect();
    picks.extend((0..20).map(|_| rng.below(n)));
    let in_group = before
        .recursive_groups()
        .find(|g| g.len() > 2)
        .map(|g| g[1].to_string())
        .expect("a group of three or more");
    picks.push(in_group.trim_start_matches('f').parse().unwrap());

    for pick in picks {
        let mut edited = functions.clone();
        edited[pick].body_hash = body(&format!("edited body {pick}"));
        let after = hash_call_graph(&edited).unwrap();
        let expected = reverse_reachable(&functions, &functions[pick].id);
        assert_eq!(changed(&before, &after), expected, "editing f{pick}");
    }
}

#[test]
fn adding_a_call_changes_the_caller_and_its_callers_only() {
    let base = vec![
        fn_node("main", "m", &["a"]),
        fn_node("a", "a", &[]),
        fn_node("b", "b", &[]),
    ];
    let mut more = base.clone();
    more[1].callees.push("b".into());
    let before = hash_call_graph(&base).unwrap();
    let after = hash_call_graph(&more).unwrap();
    assert_eq!(
        changed(&before, &after),
        BTreeSet::from(["a".into(), "main".into()])
    );
}

#[test]
fn recursive_group_members_share_one_hash_and_change_together() {
    // even <-> odd form a group; main calls even; even calls leaf.
    let package = |even: &str, odd: &str, leaf: &str| {
        vec![
            fn_node("main", "main", &["even"]),
            fn_node("even", even, &["odd", "leaf"]),
            fn_node("odd", odd, &["even"]),
            fn_node("leaf", leaf, &[]),
        ]
    };
    let base = hash_call_graph(&package("e", "o", "l")).unwrap();
    assert_eq!(base.get("even"), base.get("odd"));
    assert_ne!(base.get("even"), base.get("main"));
    assert_eq!(base.group_of("odd"), Some(vec!["even", "odd"]));

    for (what, edited) in [
        ("even", package("e2", "o", "l")),
        ("odd", package("e", "o2", "l")),
        ("leaf", package("e", "o", "l2")),
    ] {
        let after = hash_call_graph(&edited).unwrap();
        assert_ne!(base.get("even"), after.get("even"), "{what}");
        assert_ne!(base.get("odd"), after.get("odd"), "{what}");
        assert_ne!(base.get("main"), after.get("main"), "{what}");
        assert_eq!(after.get("even"), after.get("odd"), "{what}");
    }
    // Editing the group does not touch what the group calls.
    let after = hash_call_graph(&package("e2", "o", "l")).unwrap();
    assert_eq!(base.get("leaf"), after.get("leaf"));

    // Edge structure inside the group is part of the hash: odd -> even
    // replaced by odd -> odd + even keeps the members but not the hash.
    let mut rewired = package("e", "o", "l");
    rewired[2].callees = vec!["odd".into(), "even".into()];
    let after = hash_call_graph(&rewired).unwrap();
    assert_ne!(base.get("odd"), after.get("odd"));
}

#[test]
fn groups_match_mutual_reachability() {
    let mut rng = Rng(0x5eed_0002);
    let n = 300;
    let mut functions = generate(&mut rng, n);
    // Extra random edges in both directions make larger groups.
    for _ in 0..60 {
        let a = rng.below(n);
        let b = rng.below(n);
        functions[a].callees.push(format!("f{b}"));
    }
    let hashes = hash_call_graph(&functions).unwrap();
    let reaches: Vec<BTreeSet<String>> = functions
        .iter()
        .map(|f| reverse_reachable(&functions, &f.id))
        .collect();
    for (i, f) in functions.iter().enumerate() {
        // Members of f's SCC: functions that f reaches and that reach f.
        let scc: Vec<&str> = functions
            .iter()
            .enumerate()
            .filter(|&(j, g)| reaches[i].contains(&g.id) && reaches[j].contains(&f.id))
            .map(|(_, g)| g.id.as_str())
            .collect();
        let self_call = f.callees.contains(&f.id);
        let mut expected: Vec<&str> = scc.clone();
        expected.sort();
        match hashes.group_of(&f.id) {
            Some(group) => {
                assert!(scc.len() > 1 || self_call, "{} is not recursive", f.id);
                assert_eq!(group, expected, "group of {}", f.id);
                for member in &group {
                    assert_eq!(hashes.get(member), hashes.get(&f.id));
                }
            }
            None => assert!(scc.len() == 1 && !self_call, "{} should be grouped", f.id),
        }
    }
}

#[test]
fn results_do_not_depend_on_input_order_or_duplicates() {
    let mut rng = Rng(0x5eed_0003);
    let functions = generate(&mut rng, 2000);
    let reference = hash_call_graph(&functions).unwrap();
    assert_eq!(
        reference,
        hash_call_graph(&functions).unwrap(),
        "same run twice"
    );
    for round in 0..5 {
        let mut shuffled = functions.clone();
        rng.shuffle(&mut shuffled);
        for f in &mut shuffled {
            if let Some(first) = f.callees.first().cloned() {
                f.callees.push(first);
            }
            rng.shuffle(&mut f.callees);
        }
        assert_eq!(
            reference,
            hash_call_graph(&shuffled).unwrap(),
            "permutation {round}"
        );
    }
}

/// Golden hashes pin the encoding: the same package must hash the same in
/// every build of rask-store, on every machine.
#[test]
fn golden_hashes_are_stable_across_runs_and_machines() {
    let package = vec![
        fn_node("sort", "sort", &["swap"]),
        fn_node("swap", "swap", &["compare"]),
        fn_node("compare", "compare", &[]),
        fn_node("even", "even", &["odd"]),
        fn_node("odd", "odd", &["even"]),
    ];
    let hashes = hash_call_graph(&package).unwrap();
    let printed: Vec<String> = hashes
        .functions()
        .iter()
        .map(|f| format!("{} {}", f.id, f.hash))
        .collect();
    let golden = [
        "compare a144a7df8d0f7110961f039a434efaa97422d4d0bd162727c8f09d03bcd625eb",
        "even 0fcb7adde52eb9cb14c0547af7e9c15a7e9782918f76f28ed7bc5f7048a2b847",
        "odd 0fcb7adde52eb9cb14c0547af7e9c15a7e9782918f76f28ed7bc5f7048a2b847",
        "sort 8600615b91c72b3c3ccbf394627cc447b386b3197ba58f9bc44ffc79cfe30144",
        "swap f8e8a75112a6ac098e029e1d6f2d1d853cd6b957c4481525cbaa8894531bdaa8",
    ];
    assert_eq!(printed, golden, "encoding changed");
}

#[test]
fn external_callee_hashes_feed_the_caller() {
    let with_upstream = |hash_text: &str| {
        let mut main = fn_node("main", "main", &["helper"]);
        main.external_callees.push(ExternalCallee {
            package: "collections".into(),
            function: "sort".into(),
            hash: body(hash_text),
        });
        vec![main, fn_node("helper", "helper", &[])]
    };
    let before = hash_call_graph(&with_upstream("sort v1")).unwrap();
    let same = hash_call_graph(&with_upstream("sort v1")).unwrap();
    let after = hash_call_graph(&with_upstream("sort v2")).unwrap();
    assert_eq!(before, same);
    assert_ne!(before.get("main"), after.get("main"));
    assert_eq!(before.get("helper"), after.get("helper"));

    // The callee's package is part of its identity.
    let mut other_pkg = with_upstream("sort v1");
    other_pkg[0].external_callees[0].package = "collections2".into();
    let moved = hash_call_graph(&other_pkg).unwrap();
    assert_ne!(before.get("main"), moved.get("main"));
}

#[test]
fn bad_graphs_are_errors_not_panics() {
    let err = hash_call_graph(&[fn_node("a", "a", &["missing"])]).unwrap_err();
    assert!(matches!(err, Error::InvalidCallGraph { .. }), "{err:?}");
    let err = hash_call_graph(&[fn_node("a", "a", &[]), fn_node("a", "b", &[])]).unwrap_err();
    assert!(matches!(err, Error::InvalidCallGraph { .. }), "{err:?}");
    assert!(hash_call_graph(&[]).unwrap().is_empty());
}

#[test]
fn hundred_thousand_functions_including_a_deep_chain() {
    let mut rng = Rng(0x5eed_0004);
    let n = 100_000;
    let mut functions = generate(&mut rng, n);
    // A call chain through every function, 100,000 deep: no recursion in
    // the hasher means no stack overflow.
    for (i, f) in functions.iter_mut().enumerate().take(n - 1) {
        f.callees.push(format!("f{}", i + 1));
    }
    let start = std::time::Instant::now();
    let before = hash_call_graph(&functions).unwrap();
    eprintln!("hashed {n} functions in {:?}", start.elapsed());
    assert_eq!(before.len(), n);

    // The deepest function reaches nothing but itself; editing it changes
    // every function, since all of them reach it through the chain.
    let last = n - 1;
    functions[last].body_hash = body("edited");
    let after = hash_call_graph(&functions).unwrap();
    let unchanged = before
        .functions()
        .iter()
        .zip(after.functions())
        .filter(|(a, b)| a.hash == b.hash)
        .count();
    assert_eq!(unchanged, 0);
}
