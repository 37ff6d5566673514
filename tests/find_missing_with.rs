//! `Index::find_missing_with`: keys written on every core, never made into
//! `Key`s, get the answers `Index::find_missing` gives the same keys built
//! one by one — present, absent, removed, damaged, appended by another
//! handle — and the first error the writer returns ends the call.

mod common;

use std::fs;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::Xorshift;
use rask_store::index::PARALLEL_KEYS;
use rask_store::key::KeyEncoder;
use rask_store::{Durability, Error, Index, Key, Kind, Namespace, Store, StoreOptions};

fn namespace() -> Namespace {
    Namespace::new("rask-0.4+test").unwrap()
}

/// Key `n`'s components, shaped like a monomorphized instance's key.
fn write(key: &mut KeyEncoder<'_>, n: usize) {
    key.str("pkg")
        .str(&format!("f{n}"))
        .list(|args| {
            for a in 0..n % 3 {
                args.str(&format!("T{a}"));
            }
        })
        .hash(&[(n % 251) as u8; 32]);
}

fn key(n: usize) -> Key {
    let ns = namespace();
    let mut k = Key::build(&ns);
    write(&mut k, n);
    k.finish().unwrap()
}

fn store(dir: &std::path::Path) -> Store {
    Store::create(
        dir.join("cache"),
        StoreOptions::with_durability(Durability::None),
    )
    .unwrap()
}

/// Keys `0..n` stored, the first half compacted into a segment, the
/// second half in the journal.
fn filled(store: &Store, n: usize) -> Index {
    let index = Index::open(store).unwrap();
    for (first, half) in [(true, 0..n / 2), (false, n / 2..n)] {
        let keys: Vec<Key> = half.clone().map(key).collect();
        let values: Vec<Vec<u8>> = half.map(|i| format!("value {i}").into_bytes()).collect();
        let parts: Vec<[(&str, &[u8]); 1]> = values.iter().map(|v| [("v", &v[..])]).collect();
        let entries: Vec<_> = keys.iter().zip(&parts).map(|(k, p)| (k, &p[..])).collect();
        index.put_many(store, Kind::Instance, &entries).unwrap();
        if first {
            index.compact().unwrap();
        }
    }
    index
}

/// `find_missing_with` over `asked` (key numbers, in that order).
fn missing_with(index: &Index, asked: &[usize]) -> Vec<usize> {
    index
        .find_missing_with(&namespace(), asked.len(), |i, k| {
            write(k, asked[i]);
            Ok::<(), Error>(())
        })
        .unwrap()
}

fn missing_built(index: &Index, asked: &[usize]) -> Vec<usize> {
    let keys: Vec<Key> = asked.iter().map(|&n| key(n)).collect();
    index.find_missing(&keys).unwrap()
}

#[test]
fn written_keys_get_the_answers_built_keys_get() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let index = filled(&store, 4_000);
    // Removed: every tenth key, from the segment and from the journal.
    for n in (0..4_000).step_by(10) {
        assert!(index.remove(&key(n)).unwrap());
    }
    // Asked: every stored key and as many never stored, shuffled; then a
    // batch too short to be shared.
    let mut asked: Vec<usize> = (0..8_000).collect();
    Xorshift::new(7).shuffle(&mut asked);
    let expected: Vec<usize> = asked
        .iter()
        .enumerate()
        .filter(|&(_, &n)| n >= 4_000 || n % 10 == 0)
        .map(|(i, _)| i)
        .collect();
    assert!(asked.len() >= PARALLEL_KEYS);
    assert_eq!(missing_with(&index, &asked), expected);
    assert_eq!(missing_built(&index, &asked), expected);
    let few = &asked[..100];
    assert_eq!(missing_with(&index, few), missing_built(&index, few));
    assert_eq!(missing_with(&index, &[]), Vec::<usize>::new());
}

#[test]
fn a_damaged_record_is_missing_as_find_missing_says() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let index = filled(&store, 2_000);
    let journal = index.stats().unwrap().journal_path;
    drop(index);
    // One byte in the middle of the journal, inside some record.
    let mut bytes = fs::read(&journal).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    fs::write(&journal, &bytes).unwrap();
    let index = Index::open(&store).unwrap();
    let asked: Vec<usize> = (0..2_000).collect();
    let with = missing_with(&index, &asked);
    assert_eq!(with, missing_built(&index, &asked));
    assert!(
        !with.is_empty() && with.iter().all(|&i| i >= 1_000),
        "the damaged record is a journal key's: {with:?}"
    );
}

#[test]
fn keys_another_handle_appended_are_found() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let reader = filled(&store, 1_000);
    assert_eq!(missing_with(&reader, &[5, 1_500]), vec![1]);
    let writer = Index::open(&store).unwrap();
    let late = key(1_500);
    writer
        .put(&store, &late, Kind::Instance, &[("v", b"late")])
        .unwrap();
    let asked: Vec<usize> = (0..2_000).collect();
    let missing = missing_with(&reader, &asked);
    assert!(!missing.contains(&1_500), "the other handle's key is found");
    assert_eq!(missing.len(), 999);
}

#[test]
fn the_first_error_of_the_writer_is_returned_and_ends_the_call() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let index = filled(&store, 100);
    let calls = AtomicUsize::new(0);
    let count = 50_000;
    let answer = index.find_missing_with(&namespace(), count, |i, k| {
        calls.fetch_add(1, Ordering::Relaxed);
        if i == 700 {
            return Err(StringError(format!("key {i} has no body hash yet")));
        }
        write(k, i);
        Ok(())
    });
    let StringError(message) = answer.unwrap_err();
    assert_eq!(message, "key 700 has no body hash yet");
    let calls = calls.into_inner();
    assert!(calls < count / 2, "{calls} keys written after the error");
}

/// A string error that takes the store's errors too.
impl From<Error> for StringError {
    fn from(e: Error) -> StringError {
        StringError(e.to_string())
    }
}

#[derive(Debug)]
struct StringError(String);

#[test]
fn a_key_the_encoder_refuses_is_an_invalid_key_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let index = filled(&store, 10);
    let answer = index.find_missing_with(&namespace(), 2_000, |i, k| {
        if i == 1_234 {
            fn nest(k: &mut KeyEncoder<'_>, depth: usize) {
                if depth > 0 {
                    k.list(|inner| nest(inner, depth - 1));
                }
            }
            nest(k, 40);
        } else {
            write(k, i);
        }
        Ok::<(), StringError>(())
    });
    let StringError(message) = answer.unwrap_err();
    assert!(message.contains("nest deeper"), "{message}");
}
