//! Build sessions end to end: tier hits and misses, per-package roots, the
//! quick path, all-or-nothing publish, gc of published builds, explain, stats.

use std::time::Duration;

use rask_store::compiler::{
    BuildSession, CompilerId, ContentHash, Finding, PackageMetadata, SemanticHash, Tier,
};
use rask_store::gc::{self, GcOptions};
use rask_store::stats::TierCounters;
use rask_store::{Error, Index, Kind, Lookup, ObjectId, PackageName, Store, StoreOptions};

fn h(byte: u8) -> SemanticHash {
    SemanticHash::from_bytes([byte; 32])
}

fn pkg(name: &str) -> PackageName {
    PackageName::new(name).unwrap()
}

fn open() -> (tempfile::TempDir, Store) {
    open_with(StoreOptions::default())
}

/// A store that writes loose files, for the tests that delete one object's
/// file to stand for a lost object.
fn open_loose() -> (tempfile::TempDir, Store) {
    open_with(StoreOptions::default().loose())
}

fn open_with(options: StoreOptions) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path().join("cache"), options).unwrap();
    (dir, store)
}

fn rask(version: &str) -> CompilerId {
    CompilerId::new("rask", version).with_setting("target", "x86_64-linux")
}

fn meta(package: &str, body: u8) -> PackageMetadata {
    let mut m = PackageMetadata::new(package, "rask 1.0");
    m.public_types.insert("Point".into(), h(body));
    m
}

fn tier(store: &Store, session_ns: &str, tier: Tier) -> TierCounters {
    store
        .stats()
        .unwrap()
        .tiers
        .get(&(session_ns.to_string(), tier.name().to_string()))
        .copied()
        .unwrap_or_default()
}

/// The instances of one build of `app`: `sort<Point>`, `sort<Line>` and
/// `max<Point>`, with the given type definition hashes.
fn build_instances(
    store: &Store,
    index: &Index,
    point: SemanticHash,
    line: SemanticHash,
) -> (Vec<bool>, Vec<String>) {
    let app = pkg("app");
    let mut session = BuildSession::open(store, index, &rask("1.0")).unwrap();
    let keys = session.keys().clone();
    let wanted = [
        keys.instance("collections", "sort", &["Point"], &h(1), &[point])
            .unwrap(),
        keys.instance("collections", "sort", &["Line"], &h(1), &[line])
            .unwrap(),
        keys.instance("collections", "max", &["Point"], &h(2), &[point])
            .unwrap(),
    ];
    let mut hits = Vec::new();
    let mut explained = Vec::new();
    for key in &wanted {
        match session.get(&app, key, "ast").unwrap() {
            Lookup::Hit(bytes) => {
                assert_eq!(bytes, key.to_string().into_bytes());
                hits.push(true);
            }
            Lookup::Miss(_) => {
                explained.push(session.explain(&app, key).unwrap().to_string());
                session
                    .put(&app, key, &[("ast", key.to_string().as_bytes())])
                    .unwrap();
                hits.push(false);
            }
        }
    }
    session
        .finish_package(&app, &meta("app", 1), &[ContentHash::of(b"app.rk")], &[])
        .unwrap();
    session.publish("build").unwrap();
    (hits, explained)
}

#[test]
fn a_type_definition_change_invalidates_exactly_the_instances_that_use_it() {
    let (_dir, store) = open();
    let index = Index::open(&store).unwrap();
    let (first, _) = build_instances(&store, &index, h(10), h(20));
    assert_eq!(first, [false, false, false]);
    let (again, _) = build_instances(&store, &index, h(10), h(20));
    assert_eq!(
        again,
        [true, true, true],
        "an unchanged build hits everything"
    );
    // `Point` gains a field: both instances over Point miss, sort<Line> hits.
    let (after, explained) = build_instances(&store, &index, h(11), h(20));
    assert_eq!(after, [false, true, false]);
    assert_eq!(explained.len(), 2);
    for text in &explained {
        assert!(text.contains("type_definition_hashes[0] changed"), "{text}");
        assert!(!text.contains("body_semantic_hash"), "{text}");
    }
}

#[test]
fn a_compiler_upgrade_misses_completely_and_two_identities_both_stay_warm() {
    let (_dir, store) = open();
    let index = Index::open(&store).unwrap();
    let app = pkg("app");
    let run = |id: &CompilerId| -> bool {
        let mut session = BuildSession::open(&store, &index, id).unwrap();
        let key = session.keys().function("app", "main", &h(7)).unwrap();
        let hit = session.get(&app, &key, "ast").unwrap().is_hit();
        if !hit {
            session
                .put(&app, &key, &[("ast", b"checked main")])
                .unwrap();
        }
        session
            .finish_package(&app, &meta("app", 1), &[], &[])
            .unwrap();
        session.publish("build").unwrap();
        hit
    };
    let old = rask("1.0");
    let new = rask("1.1");
    assert!(!run(&old));
    assert!(run(&old));
    assert!(
        !run(&new),
        "a new compiler version shares nothing with the old"
    );
    for _ in 0..3 {
        assert!(run(&old), "the old compiler stays warm");
        assert!(run(&new), "the new compiler stays warm");
    }
    let debug = rask("1.0").with_setting("edition", "2027");
    assert!(
        !run(&debug),
        "a setting that changes output is another identity"
    );
}

struct Built {
    root: ObjectId,
    meta: ObjectId,
}

/// Builds `app` (one parse-tier file and one function) against `upstream`.
fn build_app(store: &Store, index: &Index, files: &[&[u8]], upstream: &[ObjectId]) -> Built {
    let app = pkg("app");
    let mut session = BuildSession::open(store, index, &rask("1.0")).unwrap();
    let hashes: Vec<ContentHash> = files.iter().map(|f| ContentHash::of(f)).collect();
    for (file, hash) in files.iter().zip(&hashes) {
        let key = session.keys().parse(*hash).unwrap();
        if !session.get(&app, &key, "ast").unwrap().is_hit() {
            session.put(&app, &key, &[("ast", file)]).unwrap();
        }
    }
    let finished = session
        .finish_package(&app, &meta("app", 1), &hashes, upstream)
        .unwrap();
    session.publish("build app").unwrap();
    Built {
        root: finished.root_id,
        meta: finished.metadata_id,
    }
}

#[test]
fn the_quick_path_skips_an_unchanged_package_without_touching_the_index() {
    let (_dir, store) = open();
    let index = Index::open(&store).unwrap();
    let lib_meta = store.put_object(Kind::Meta, &[], b"lib metadata").unwrap();
    let built = build_app(&store, &index, &[b"a.rk", b"b.rk"], &[lib_meta]);
    let ns = rask("1.0").namespace().unwrap();
    let parse_before = tier(&store, ns.as_str(), Tier::Parse);
    let meta_before = tier(&store, ns.as_str(), Tier::Meta);

    let app = pkg("app");
    let mut session = BuildSession::open(&store, &index, &rask("1.0")).unwrap();
    // Same inputs, in another order.
    let files = [ContentHash::of(b"b.rk"), ContentHash::of(b"a.rk")];
    let previous = session
        .quick_check(&app, &files, &[lib_meta])
        .unwrap()
        .expect("nothing changed: skip");
    assert_eq!(previous.root_id, built.root);
    assert_eq!(previous.metadata_id, built.meta);
    assert_eq!(session.metadata_id(&app), Some(built.meta));
    assert_eq!(
        previous.metadata,
        meta("app", 1),
        "downstream packages get the skipped package's metadata"
    );
    assert!(
        store.live_pins().unwrap().is_empty(),
        "the quick path pins nothing"
    );
    let report = session.publish("skip app").unwrap();
    assert_eq!((report.built, report.skipped), (0, 1));
    assert!(report.refs.is_empty(), "{report:?}");
    assert_eq!(
        store.read_ref(&ns, &app).unwrap(),
        Some(built.root),
        "the skipped root is carried unchanged"
    );
    assert_eq!(
        store.reflog(&ns, &app).unwrap().entries.len(),
        1,
        "a no-op build writes no ref and no reflog line"
    );
    assert_eq!(
        tier(&store, ns.as_str(), Tier::Parse),
        parse_before,
        "no parse-tier lookup"
    );
    let meta_after = tier(&store, ns.as_str(), Tier::Meta);
    assert_eq!(meta_after.hits, meta_before.hits + 1);

    // A changed file, or a changed upstream metadata id: no skip.
    let mut session = BuildSession::open(&store, &index, &rask("1.0")).unwrap();
    let edited = [ContentHash::of(b"a.rk"), ContentHash::of(b"b2.rk")];
    assert!(
        session
            .quick_check(&app, &edited, &[lib_meta])
            .unwrap()
            .is_none()
    );
    let mut session = BuildSession::open(&store, &index, &rask("1.0")).unwrap();
    let lib_v2 = store
        .put_object(Kind::Meta, &[], b"lib metadata v2")
        .unwrap();
    assert!(
        session
            .quick_check(&app, &files, &[lib_v2])
            .unwrap()
            .is_none()
    );
    assert!(
        session
            .quick_check(&app, &files[..1], &[lib_meta])
            .unwrap()
            .is_none()
    );
    // A package never built is never skipped.
    assert!(
        session
            .quick_check(&pkg("new"), &[], &[])
            .unwrap()
            .is_none()
    );
    drop(session);
    store.flush().unwrap();
    assert_eq!(
        tier(&store, ns.as_str(), Tier::Meta).absent,
        meta_after.absent + 4
    );
}

#[test]
fn a_previous_build_whose_metadata_is_gone_is_rebuilt_not_an_error() {
    let (_dir, store) = open_loose();
    let index = Index::open(&store).unwrap();
    let built = build_app(&store, &index, &[b"a.rk"], &[]);
    std::fs::remove_file(store.object_path(&built.meta)).unwrap();
    let mut session = BuildSession::open(&store, &index, &rask("1.0")).unwrap();
    let files = [ContentHash::of(b"a.rk")];
    assert!(
        session
            .quick_check(&pkg("app"), &files, &[])
            .unwrap()
            .is_none(),
        "a skip would hand downstream packages metadata that is not there"
    );
    drop(session);
    store.flush().unwrap();
    let ns = rask("1.0").namespace().unwrap();
    assert_eq!(tier(&store, ns.as_str(), Tier::Meta).dangling, 1);
}

#[test]
fn publish_is_all_or_nothing_when_another_build_moved_a_ref() {
    let (_dir, store) = open();
    let index = Index::open(&store).unwrap();
    let ns = rask("1.0").namespace().unwrap();
    let mut session = BuildSession::open(&store, &index, &rask("1.0")).unwrap();
    for name in ["a", "b"] {
        session
            .finish_package(&pkg(name), &meta(name, 1), &[], &[])
            .unwrap();
    }
    // Meanwhile another build publishes `b`.
    let other = store.put_object(Kind::Root, &[], b"someone else").unwrap();
    store
        .update_ref(&ns, &pkg("b"), rask_store::Expect::Absent, other, "other")
        .unwrap();
    let err = session.publish("build").unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err}");
    assert_eq!(
        store.read_ref(&ns, &pkg("a")).unwrap(),
        None,
        "a was not published"
    );
    assert_eq!(store.read_ref(&ns, &pkg("b")).unwrap(), Some(other));
    assert!(store.live_pins().unwrap().is_empty(), "pins are released");

    // A fresh session sees the new value and publishes.
    let mut session = BuildSession::open(&store, &index, &rask("1.0")).unwrap();
    let b = session
        .finish_package(&pkg("b"), &meta("b", 2), &[], &[])
        .unwrap();
    session.publish("rebuild").unwrap();
    assert_eq!(store.read_ref(&ns, &pkg("b")).unwrap(), Some(b.root_id));
}

#[test]
fn gc_from_published_roots_keeps_every_object_the_builds_used() {
    let (_dir, store) = open();
    let index = Index::open(&store).unwrap();
    let app = pkg("app");
    let ns = rask("1.0").namespace().unwrap();
    // Build 1: one object per tier.
    let mut s1 = BuildSession::open(&store, &index, &rask("1.0")).unwrap();
    let k = s1.keys().clone();
    let reused = [
        k.parse(ContentHash::of(b"main.rk")).unwrap(),
        k.function("app", "main", &h(1)).unwrap(),
        k.instance("collections", "sort", &["Point"], &h(2), &[h(3)])
            .unwrap(),
        k.comptime("table", &h(4), &h(5)).unwrap(),
    ];
    for key in &reused {
        s1.put(&app, key, &[("ast", key.to_string().as_bytes())])
            .unwrap();
    }
    let old_build = s1.finish_package(&app, &meta("app", 1), &[], &[]).unwrap();
    // While the build runs, what it produced is pinned.
    let pinned: Vec<ObjectId> = store
        .live_pins()
        .unwrap()
        .into_iter()
        .flat_map(|p| p.ids)
        .collect();
    assert!(pinned.contains(&old_build.root_id));
    s1.publish("build 1").unwrap();
    assert!(store.live_pins().unwrap().is_empty());

    // Build 2 reuses all four (hits, no put) and adds a new instance.
    let mut s2 = BuildSession::open(&store, &index, &rask("1.0")).unwrap();
    for key in &reused {
        assert!(s2.get(&app, key, "ast").unwrap().is_hit());
    }
    let fresh = k
        .instance("collections", "sort", &["Line"], &h(2), &[h(6)])
        .unwrap();
    s2.put(&app, &fresh, &[("ast", b"sort<Line>")]).unwrap();
    let new_build = s2.finish_package(&app, &meta("app", 2), &[], &[]).unwrap();
    s2.publish("build 2").unwrap();
    let root = store.get_object(&new_build.root_id).unwrap();
    assert_eq!(root.kind(), Kind::Root);
    assert_eq!(
        root.links().len(),
        1 + reused.len() + 1,
        "metadata + 5 parts"
    );

    let mut options = GcOptions::default();
    options.grace = Duration::ZERO;
    let report = gc::collect_objects(&store, &[new_build.root_id], options, &|_| {}).unwrap();
    assert!(report.removed_objects >= 2, "the old root and metadata go");
    assert!(!store.contains_object(&old_build.root_id).unwrap());
    assert!(!store.contains_object(&old_build.metadata_id).unwrap());
    for id in root.links() {
        assert!(store.contains_object(id).unwrap(), "{id} was collected");
    }
    // And the next build still hits everything.
    let mut s3 = BuildSession::open(&store, &index, &rask("1.0")).unwrap();
    for key in reused.iter().chain([&fresh]) {
        assert!(s3.get(&app, key, "ast").unwrap().is_hit(), "{key}");
    }
    assert_eq!(store.read_ref(&ns, &app).unwrap(), Some(new_build.root_id));
}

#[test]
fn explain_names_the_component_that_changed() {
    let (_dir, store) = open();
    let index = Index::open(&store).unwrap();
    let app = pkg("app");
    let mut s1 = BuildSession::open(&store, &index, &rask("1.0")).unwrap();
    let k = s1.keys().clone();
    let old = [
        k.function("app", "main", &h(1)).unwrap(),
        k.instance("collections", "sort", &["Point"], &h(2), &[h(3), h(4)])
            .unwrap(),
        k.comptime("table", &h(5), &h(6)).unwrap(),
    ];
    for key in &old {
        s1.put(&app, key, &[("ast", b"x")]).unwrap();
    }
    s1.finish_package(&app, &meta("app", 1), &[], &[]).unwrap();
    s1.publish("build 1").unwrap();

    let mut s2 = BuildSession::open(&store, &index, &rask("1.0")).unwrap();
    let cases = [
        (
            k.function("app", "main", &h(9)).unwrap(),
            "semantic_hash changed",
        ),
        (
            k.instance("collections", "sort", &["Point"], &h(9), &[h(3), h(4)])
                .unwrap(),
            "body_semantic_hash changed",
        ),
        (
            k.instance("collections", "sort", &["Point"], &h(2), &[h(3), h(9)])
                .unwrap(),
            "type_definition_hashes[1] changed",
        ),
        (
            k.instance(
                "collections",
                "sort",
                &["Point", "i32"],
                &h(2),
                &[h(3), h(4)],
            )
            .unwrap(),
            "type_arguments differ",
        ),
        (
            k.comptime("table", &h(9), &h(6)).unwrap(),
            "arguments_hash changed",
        ),
    ];
    for (key, expected) in &cases {
        assert!(!s2.get(&app, key, "ast").unwrap().is_hit());
        let why = s2.explain(&app, key).unwrap();
        let text = why.to_string();
        assert!(text.contains(expected), "{key}: {text}");
        assert_eq!(why.differences().len(), 1, "{text}");
        assert!(why.closest.is_some());
    }
    // A function the previous build never compiled, and a package never built.
    let new_fn = k.function("app", "helper", &h(1)).unwrap();
    assert_eq!(
        s2.explain(&app, &new_fn).unwrap().finding,
        Finding::NoPreviousKey
    );
    assert_eq!(
        s2.explain(&pkg("other"), &new_fn).unwrap().finding,
        Finding::NoPreviousBuild
    );
    // The exact previous key, whose entry was removed since.
    index.remove(old[0].key()).unwrap();
    assert!(!s2.get(&app, &old[0], "ast").unwrap().is_hit());
    assert_eq!(s2.explain(&app, &old[0]).unwrap().finding, Finding::SameKey);
}

#[test]
fn stats_show_hits_and_misses_per_tier_after_publish() {
    let (_dir, store) = open_loose();
    let index = Index::open(&store).unwrap();
    let app = pkg("app");
    let ns = rask("1.0").namespace().unwrap();
    let mut s = BuildSession::open(&store, &index, &rask("1.0")).unwrap();
    let k = s.keys().clone();
    let parse = k.parse(ContentHash::of(b"main.rk")).unwrap();
    let f1 = k.function("app", "a", &h(1)).unwrap();
    let f2 = k.function("app", "b", &h(2)).unwrap();
    assert!(!s.get(&app, &parse, "ast").unwrap().is_hit());
    s.put(&app, &parse, &[("ast", b"tree")]).unwrap();
    assert_eq!(
        s.find_missing(&app, &[f1.clone(), f2.clone()]).unwrap(),
        [0, 1]
    );
    s.put(&app, &f1, &[("ast", b"a")]).unwrap();
    // Counted once per distinct key per build: still one miss each.
    assert!(s.get(&app, &f1, "ast").unwrap().is_hit());
    s.finish_package(&app, &meta("app", 1), &[], &[]).unwrap();
    s.publish("build").unwrap();
    let parse_stats = tier(&store, ns.as_str(), Tier::Parse);
    assert_eq!(
        (parse_stats.hits, parse_stats.absent, parse_stats.puts),
        (0, 1, 1)
    );
    let fn_stats = tier(&store, ns.as_str(), Tier::Function);
    assert_eq!((fn_stats.hits, fn_stats.absent, fn_stats.puts), (0, 2, 1));
    assert_eq!(tier(&store, ns.as_str(), Tier::Meta).puts, 1);

    // Second build: a dangling entry (its part object deleted) is a miss by cause.
    let mut s = BuildSession::open(&store, &index, &rask("1.0")).unwrap();
    let entry = index.lookup(f1.key()).unwrap().hit().unwrap();
    std::fs::remove_file(store.object_path(&entry.parts()[0].id)).unwrap();
    assert_eq!(
        s.get(&app, &f1, "ast").unwrap().miss_cause(),
        Some(rask_store::MissCause::Dangling)
    );
    assert!(s.get(&app, &parse, "ast").unwrap().is_hit());
    s.publish("nothing").unwrap();
    let fn_stats = tier(&store, ns.as_str(), Tier::Function);
    assert_eq!(fn_stats.dangling, 1);
    assert_eq!(tier(&store, ns.as_str(), Tier::Parse).hits, 1);
}

#[test]
fn keys_of_another_compiler_are_refused() {
    let (_dir, store) = open();
    let index = Index::open(&store).unwrap();
    let mut s = BuildSession::open(&store, &index, &rask("1.0")).unwrap();
    let other = BuildSession::open(&store, &index, &rask("2.0")).unwrap();
    let key = other.keys().function("app", "f", &h(1)).unwrap();
    let err = s.get(&pkg("app"), &key, "ast").unwrap_err();
    assert!(matches!(err, Error::InvalidRequest { .. }), "{err}");
}

#[test]
fn batch_gets_and_puts_answer_count_and_keep_what_one_at_a_time_does() {
    let (_dir, store) = open();
    let index = Index::open(&store).unwrap();
    let app = pkg("app");
    let ns = rask("1.0").namespace().unwrap();
    let mut s = BuildSession::open(&store, &index, &rask("1.0")).unwrap();
    let k = s.keys().clone();
    // 300 functions and a parse result: two tiers (two object kinds) in one
    // put_many, with code of up to ~24 KB so that the reads are shared out.
    let keys: Vec<_> = (0..300u32)
        .map(|i| k.function("app", &format!("f{i}"), &h(i as u8)).unwrap())
        .collect();
    let code = |i: usize| {
        format!("code of f{i} ")
            .repeat(1 + i * 7 % 2000)
            .into_bytes()
    };
    let codes: Vec<Vec<u8>> = (0..keys.len()).map(code).collect();
    let parse = k.parse(ContentHash::of(b"main.rk")).unwrap();
    let mut missed = 0;
    s.get_many(&app, &keys, "code", |_, found| {
        assert!(!found.is_hit());
        missed += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(missed, keys.len());
    // The first 200 are stored in one batch with the parse result; the
    // rest stay absent.
    let parts: Vec<[(&str, &[u8]); 1]> = codes.iter().map(|c| [("code", &c[..])]).collect();
    let tree: [(&str, &[u8]); 1] = [("ast", b"tree")];
    let mut entries: Vec<_> = keys[..200]
        .iter()
        .zip(&parts)
        .map(|(key, p)| (key, &p[..]))
        .collect();
    entries.push((&parse, &tree[..]));
    let outcomes = s.put_many(&app, &entries).unwrap();
    assert_eq!(outcomes.len(), 201);
    s.finish_package(&app, &meta("app", 1), &[], &[]).unwrap();
    s.publish("build").unwrap();
    let fn_stats = tier(&store, ns.as_str(), Tier::Function);
    assert_eq!((fn_stats.absent, fn_stats.puts), (300, 200));
    assert_eq!(tier(&store, ns.as_str(), Tier::Parse).puts, 1);

    // A later build, another handle: the batch answers as get does, every
    // hit with its bytes, and gc keeps everything the published build used.
    let root = store.root().to_path_buf();
    drop(index);
    drop(store);
    let store = Store::open(&root, StoreOptions::default()).unwrap();
    let index = Index::open(&store).unwrap();
    let mut policy = gc::GcPolicy::default();
    policy.objects.grace = Duration::ZERO;
    let report = gc::collect(&store, &index, policy, &|_| {}).unwrap();
    assert_eq!(report.objects.removed_objects, 0, "{report:?}");
    let mut s = BuildSession::open(&store, &index, &rask("1.0")).unwrap();
    let mut seen = vec![None; keys.len()];
    s.get_many(&app, &keys, "code", |i, found| {
        assert!(seen[i].is_none(), "key {i} answered twice");
        seen[i] = Some(match found {
            Lookup::Hit(bytes) => Some(bytes.to_vec()),
            Lookup::Miss(_) => None,
        });
        Ok(())
    })
    .unwrap();
    for (i, answer) in seen.into_iter().enumerate() {
        let answer = answer.expect("every key answered");
        let one = s.get(&app, &keys[i], "code").unwrap().hit();
        assert_eq!(answer, one, "key {i}");
        assert_eq!(answer.is_some(), i < 200, "key {i}");
        if let Some(bytes) = answer {
            assert_eq!(bytes, codes[i], "key {i}");
        }
    }
    assert!(s.get(&app, &parse, "ast").unwrap().is_hit());
    s.publish("warm").unwrap();
    let fn_stats = tier(&store, ns.as_str(), Tier::Function);
    assert_eq!((fn_stats.hits, fn_stats.absent), (200, 400));
}

#[test]
fn a_gc_with_no_grace_beside_a_build_never_takes_what_it_is_storing() {
    // gc runs again and again on its own handles, grace 0 and not waiting
    // for writers (`gc --grace 0 --force` beside a running build), while a
    // session stores batches and single entries. Between an object's write
    // and its pin the session holds the writers lock, so no sweep falls
    // between them: every put succeeds and every entry stays whole.
    let (_dir, store) = open_loose();
    let index = Index::open(&store).unwrap();
    let root = store.root().to_path_buf();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let app = pkg("app");
    std::thread::scope(|scope| {
        let collector = scope.spawn(|| {
            let store = Store::open(&root, StoreOptions::default().loose()).unwrap();
            let index = Index::open(&store).unwrap();
            let mut swept = 0u32;
            let mut locked = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || swept == 0 {
                let mut policy = gc::GcPolicy::default();
                policy.objects.grace = Duration::ZERO;
                policy.wait = rask_store::Wait::NoWait;
                match gc::collect(&store, &index, policy, &|_| {}) {
                    Ok(_) => swept += 1,
                    Err(Error::Locked { .. }) => locked += 1,
                    Err(e) => panic!("gc: {e}"),
                }
                // A gc that loops without a pause would keep the build
                // waiting for the lock (flock lets it back in first).
                std::thread::sleep(Duration::from_micros(500));
            }
            assert!(locked + swept > 0);
            swept
        });
        // Stops the collector however this thread ends (a failed put
        // panics, and the scope then waits for the collector).
        struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let stopping = StopOnDrop(&stop);
        let mut s = BuildSession::open(&store, &index, &rask("1.0")).unwrap();
        let k = s.keys().clone();
        let mut keys = Vec::new();
        for round in 0..60u32 {
            let batch: Vec<_> = (0..20u32)
                .map(|i| {
                    let name = format!("f{round}_{i}");
                    k.function("app", &name, &h((round * 20 + i) as u8))
                        .unwrap()
                })
                .collect();
            let codes: Vec<Vec<u8>> = batch
                .iter()
                .map(|key| format!("code of {key}").repeat(50).into_bytes())
                .collect();
            let parts: Vec<[(&str, &[u8]); 1]> = codes.iter().map(|c| [("code", &c[..])]).collect();
            let entries: Vec<_> = batch.iter().zip(&parts).map(|(k, p)| (k, &p[..])).collect();
            s.put_many(&app, &entries).unwrap();
            let single = k
                .function("app", &format!("g{round}"), &h(round as u8))
                .unwrap();
            s.put(&app, &single, &[("code", format!("g{round}").as_bytes())])
                .unwrap();
            keys.extend(batch);
            keys.push(single);
        }
        drop(stopping);
        let swept = collector.join().unwrap();
        assert!(swept > 0, "gc swept at least once");
        for key in &keys {
            assert!(s.get(&app, key, "code").unwrap().is_hit(), "{key} is whole");
        }
    });
}
