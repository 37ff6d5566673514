//! Statistics persist across processes and are read without walking objects.

mod common;

use common::{cli, cli_with_input, code, stdout};
use rask_store::stats::TierCounters;
use rask_store::{Kind, Namespace, Store, StoreOptions};

#[test]
fn size_by_kind_and_tier_counters_add_up_across_processes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    assert_eq!(code(&cli(&root, &["init"])), 0);
    // Three processes; the third puts content that already exists.
    cli_with_input(&root, &["put", "--kind", "ast"], b"fn a() {}");
    cli_with_input(&root, &["put", "--kind", "instance"], b"sort<i32>");
    cli_with_input(&root, &["put", "--kind", "ast"], b"fn a() {}");

    {
        let store = Store::open(&root, StoreOptions::default()).unwrap();
        let ns = Namespace::new("rask-0.4+release").unwrap();
        let recorder = store.stats_recorder();
        let counters = TierCounters {
            hits: 7,
            absent: 2,
            corrupt: 1,
            ..TierCounters::default()
        };
        recorder.count(ns.as_str(), "instance", counters);
        store.put_object(Kind::Memo, &[], b"42").unwrap();
    } // dropping the store flushes its counters

    let report = Store::open(&root, StoreOptions::default())
        .unwrap()
        .stats()
        .unwrap();
    assert_eq!(
        report.kinds[&Kind::Ast].objects,
        1,
        "a repeated put is not a new object"
    );
    assert_eq!(report.kinds[&Kind::Ast].bytes, 20 + 9);
    assert_eq!(report.kinds[&Kind::Instance].objects, 1);
    assert_eq!(report.kinds[&Kind::Memo].objects, 1);
    let c = report.tiers[&("rask-0.4+release".into(), "instance".into())];
    assert_eq!((c.hits, c.misses(), c.corrupt), (7, 3, 1));

    let out = cli(&root, &["stats"]);
    let text = stdout(&out);
    assert!(text.contains("rask-0.4+release"), "{text}");
    assert!(text.contains("70.0"), "hit rate 7/10 shown: {text}");
    let json = stdout(&cli(&root, &["stats", "--json"]));
    assert!(
        json.contains(r#"{"kind":"ast","objects":1,"bytes":29}"#),
        "{json}"
    );
    assert!(
        json.contains(r#""hits":7,"misses":3,"absent":2,"corrupt":1"#),
        "{json}"
    );
}
