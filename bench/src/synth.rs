//! Generated objects and keys for the gc/verify and index modes, made on
//! the fly from `(seed, i)` so that a million of them never sit in memory.
//!
//! Sizes, "compiler artifacts" (gc mode): 70% 128 B–2 KiB, 25% 2–16 KiB,
//! 5% 16–64 KiB, log-uniform inside each band (mean ~4 KB, median ~1 KB):
//! W1's shape shifted towards the per-function ASTs and metadata a build
//! cache holds most of, so that 1,000,000 objects are ~3.8 GiB — they fit in
//! this machine's page cache and on its disk twice (rask-store and git).
//! Sizes, "small results" (index mode): 32–512 B log-uniform, the comptime
//! results and small metadata parts whose cost is all index and file, not
//! bytes. Content as W1: runs of random bytes and AST-like tokens, half and
//! half (compresses ~2×).
//!
//! Keys: `(package, function, body hash)`, all derived from `i`.

use rask_store::{Component, Index, Key, Kind, Namespace, Store};

use crate::peer::Res;
use crate::rng::Rng;
use crate::workload::fill_value;

/// Which size distribution values are drawn from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sizes {
    /// gc mode: compiler artifacts, mean ~4 KB.
    Artifacts,
    /// index mode: small results, 32–512 B.
    Small,
}

/// Stream of per-object generators: far from W1's streams.
const STREAM_BASE: u64 = 1 << 40;

/// The size of value `i`.
pub fn size(seed: u64, i: u64, sizes: Sizes) -> usize {
    let mut rng = Rng::new(seed, STREAM_BASE + i);
    draw_size(&mut rng, sizes)
}

fn draw_size(rng: &mut Rng, sizes: Sizes) -> usize {
    let (lo, hi): (f64, f64) = match sizes {
        Sizes::Small => (32.0, 512.0),
        Sizes::Artifacts => match rng.below(20) {
            0..=13 => (128.0, 2048.0),
            14..=18 => (2048.0, 16384.0),
            _ => (16384.0, 65536.0),
        },
    };
    (lo * (hi / lo).powf(rng.unit())) as usize
}

/// Writes value `i` into `out` (replacing its contents).
pub fn value(seed: u64, i: u64, sizes: Sizes, out: &mut Vec<u8>) {
    let mut rng = Rng::new(seed, STREAM_BASE + i);
    let len = draw_size(&mut rng, sizes);
    out.clear();
    out.resize(len, 0);
    fill_value(&mut rng, out);
}

/// Key `i`: `(pkg_NN, fn_i, body hash of i)`. Keys `n..` are never stored.
pub fn key(namespace: &Namespace, seed: u64, i: u64) -> Res<Key> {
    let mut rng = Rng::new(seed, STREAM_BASE / 2 + i);
    let components = vec![
        Component::str(format!("pkg_{:02}", i % 50)),
        Component::str(format!("fn_{i}")),
        Component::Hash(rng.hash32()),
    ];
    Ok(Key::new(namespace.clone(), components)?)
}

/// Puts entries `0..n` through the index, one part named `part` each with
/// a value of `sizes`, then flushes index and store: how the gc and index
/// modes fill a store.
pub fn populate(
    store: &Store,
    index: &Index,
    namespace: &Namespace,
    (seed, n): (u64, u64),
    sizes: Sizes,
    part: &str,
) -> Res<()> {
    let mut buf = Vec::new();
    for i in 0..n {
        value(seed, i, sizes, &mut buf);
        index.put(
            store,
            &key(namespace, seed, i)?,
            Kind::Instance,
            &[(part, &buf)],
        )?;
    }
    index.flush()?;
    store.flush()?;
    Ok(())
}

/// The same key as bytes, for stores whose keys are strings (cacache).
pub fn key_string(seed: u64, i: u64) -> String {
    let mut rng = Rng::new(seed, STREAM_BASE / 2 + i);
    format!("pkg_{:02}/fn_{i}/{}", i % 50, hex::encode(rng.hash32()))
}

/// `p` (0–100) percentile of sorted nanoseconds.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_deterministic_and_follow_the_bands() {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        value(1, 7, Sizes::Artifacts, &mut a);
        value(1, 7, Sizes::Artifacts, &mut b);
        assert_eq!(a, b);
        assert_eq!(a.len(), size(1, 7, Sizes::Artifacts));
        value(1, 8, Sizes::Artifacts, &mut b);
        assert_ne!(a, b);
        let sizes: Vec<usize> = (0..20_000).map(|i| size(1, i, Sizes::Artifacts)).collect();
        let mean = sizes.iter().sum::<usize>() as f64 / sizes.len() as f64;
        assert!((3_300.0..4_700.0).contains(&mean), "{mean}");
        assert!(sizes.iter().all(|&s| (128..=65_536).contains(&s)));
        assert!((0..2_000).all(|i| (32..=512).contains(&size(1, i, Sizes::Small))));
    }

    #[test]
    fn keys_differ_and_repeat() {
        let ns = Namespace::new("t").unwrap();
        assert_eq!(key(&ns, 1, 5).unwrap(), key(&ns, 1, 5).unwrap());
        assert_ne!(key(&ns, 1, 5).unwrap(), key(&ns, 1, 6).unwrap());
        assert_ne!(key_string(1, 5), key_string(1, 6));
    }

    #[test]
    fn percentiles_pick_by_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 51);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&[], 50.0), 0);
    }
}
