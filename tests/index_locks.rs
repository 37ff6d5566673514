//! Index appends take the store's shared writers lock, so gc's exclusive
//! lock keeps them out while it decides what is reachable.

use std::time::Duration;

use rask_store::index::{PartRef, PutOutcome};
use rask_store::lock::ExclusiveGuard;
use rask_store::{Component, Durability, Index, Key, Kind, Namespace, Store, StoreOptions, Wait};

fn key(name: &str) -> Key {
    Key::new(Namespace::new("locks").unwrap(), vec![Component::str(name)]).unwrap()
}

#[test]
fn index_appends_wait_while_gc_holds_the_writers_lock() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(
        dir.path().join("store"),
        StoreOptions::with_durability(Durability::None),
    )
    .unwrap();
    let index = Index::open(&store).unwrap();
    let id = store.put_object(Kind::Instance, &[], b"part").unwrap();
    let part = PartRef {
        name: "ast".into(),
        id,
        size: 4,
    };
    let first = key("first");

    // A put (the index's first append: it also creates the journal).
    let gc = ExclusiveGuard::acquire(store.layout(), Wait::Block).unwrap();
    std::thread::scope(|s| {
        let put = s.spawn(|| index.put_entry(&store, &first, vec![part.clone()]));
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            !put.is_finished(),
            "an index append finished while gc held the writers lock exclusively"
        );
        let other = Index::open(&store).unwrap();
        assert!(
            !other.lookup(&first).unwrap().is_hit(),
            "an entry became visible while gc held the writers lock"
        );
        drop(gc);
        let outcome = put.join().unwrap().unwrap();
        assert!(matches!(outcome, PutOutcome::Written(_)), "{outcome:?}");
    });
    assert!(
        Index::open(&store)
            .unwrap()
            .lookup(&first)
            .unwrap()
            .is_hit()
    );

    // A remove is an append too.
    let gc = ExclusiveGuard::acquire(store.layout(), Wait::Block).unwrap();
    std::thread::scope(|s| {
        let remove = s.spawn(|| index.remove(&first));
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            !remove.is_finished(),
            "an index remove finished while gc held the writers lock exclusively"
        );
        assert!(
            Index::open(&store)
                .unwrap()
                .lookup(&first)
                .unwrap()
                .is_hit()
        );
        drop(gc);
        assert!(remove.join().unwrap().unwrap());
    });
    assert!(
        !Index::open(&store)
            .unwrap()
            .lookup(&first)
            .unwrap()
            .is_hit()
    );

    // And once gc has let go, appends do not wait.
    let second = key("second");
    let outcome = index.put_entry(&store, &second, vec![part]).unwrap();
    assert!(matches!(outcome, PutOutcome::Written(_)));
}
