//! Workload W1: N keyed values shaped like a compiler's monomorphization
//! cache, generated deterministically from a seed.
//!
//! Keys: `(package, function, [type args; 0..=3], body hash [32], [type-def
//! hashes [32]; 0..=3])` in one canonical byte encoding (below). Values: 60%
//! 256 B–4 KiB, 30% 4–32 KiB, 10% 32–256 KiB, log-uniform inside each band
//! (median ~2.6 KB, mean ~16 KB, ~1.5 GiB for 100,000); each value alternates
//! runs of random bytes and runs of AST-like token text, half and half.
//!
//! Key encoding: `u8 version (1) ‖ u16le len ‖ package ‖ u16le len ‖ function
//! ‖ u8 n ‖ n × (u16le len ‖ type arg) ‖ [32] body hash ‖ u8 m ‖ m × [32]`.

use std::collections::HashSet;

use crate::rng::Rng;

const STREAM_KEYS: u64 = 1;
const STREAM_VALUES: u64 = 2;
const STREAM_ABSENT: u64 = 3;

const TYPES: &[&str] = &[
    "i32",
    "u64",
    "f64",
    "bool",
    "String",
    "&str",
    "Vec<u8>",
    "Vec<Token>",
    "Option<Span>",
    "HashMap<Symbol, TypeId>",
    "Box<dyn Visitor>",
    "Result<Ast, ParseError>",
    "Point",
    "Arena<Node>",
];

const TOKENS: &[&str] = &[
    "fn", "let", "mut", "(", ")", "{", "}", "[", "]", "->", "=>", "::", ";", ",", ":", "=", "+",
    "if", "else", "match", "return", "while", "for", "in", "self", "Self", "impl", "struct",
    "enum", "&", "*", "<", ">", "Some", "None", "Ok", "Err", "0", "1", "42", "true", "false",
    "node", "span", "ty", "expr", "stmt", "lhs", "rhs", "args", "body", "ctx", "len", "push",
];

/// The generated workload: keys, values and keys that are never stored.
///
/// Every byte is held in memory mapped with transparent huge pages
/// ([`Huge`]): on the benchmark machine, 4 KiB pages left untouched for half
/// a second cost 20–100 µs each to touch again, which every peer would pay
/// on the workload's bytes, outside its own code (docs/BENCHMARKS.md).
pub struct Workload {
    /// The seed everything was drawn from.
    pub seed: u64,
    keys: Packed,
    absent: Packed,
    arena: Huge,
    spans: Vec<(usize, usize)>,
}

/// Anonymous memory advised to be backed by transparent huge pages (2 MiB
/// on x86-64); plain 4 KiB pages where the kernel gives none.
pub struct Huge(memmap2::MmapMut);

impl Huge {
    /// `len` zeroed bytes (mapped, not yet touched).
    pub fn zeroed(len: usize) -> Huge {
        let map = memmap2::MmapOptions::new()
            .len(len.max(1))
            .map_anon()
            .expect("map anonymous memory for the workload");
        // Advice, not a requirement: without huge pages the bytes are the same.
        let _ = map.advise(memmap2::Advice::HugePage);
        Huge(map)
    }

    fn bytes(&self, len: usize) -> &[u8] {
        &self.0[..len]
    }

    fn bytes_mut(&mut self, len: usize) -> &mut [u8] {
        &mut self.0[..len]
    }
}

/// Byte strings laid end to end in one [`Huge`].
struct Packed {
    bytes: Huge,
    spans: Vec<(usize, usize)>,
}

impl Packed {
    fn new(items: &[Vec<u8>]) -> Packed {
        let total = items.iter().map(Vec::len).sum();
        let mut bytes = Huge::zeroed(total);
        let mut spans = Vec::with_capacity(items.len());
        let mut at = 0;
        for item in items {
            bytes.bytes_mut(total)[at..at + item.len()].copy_from_slice(item);
            spans.push((at, item.len()));
            at += item.len();
        }
        Packed { bytes, spans }
    }

    fn get(&self, i: usize) -> &[u8] {
        let (at, len) = self.spans[i];
        &self.bytes.0[at..at + len]
    }
}

impl Workload {
    /// Generates `n` keyed values and `n / 2` absent keys from `seed`.
    pub fn generate(n: usize, seed: u64) -> Workload {
        let mut key_rng = Rng::new(seed, STREAM_KEYS);
        let packages: Vec<String> = (0..50).map(|i| format!("pkg_{i:02}")).collect();
        let mut seen = HashSet::with_capacity(n + n / 2);
        let mut keys = Vec::with_capacity(n);
        while keys.len() < n {
            let key = make_key(&mut key_rng, &packages);
            if seen.insert(key.clone()) {
                keys.push(key);
            }
        }
        let mut absent_rng = Rng::new(seed, STREAM_ABSENT);
        let mut absent = Vec::with_capacity(n / 2);
        while absent.len() < n / 2 {
            let key = make_key(&mut absent_rng, &packages);
            if seen.insert(key.clone()) {
                absent.push(key);
            }
        }

        let mut value_rng = Rng::new(seed, STREAM_VALUES);
        let sizes: Vec<usize> = (0..n).map(|_| value_size(&mut value_rng)).collect();
        let total: usize = sizes.iter().sum();
        let mut arena = Huge::zeroed(total);
        let mut spans = Vec::with_capacity(n);
        let mut start = 0;
        for size in sizes {
            fill_value(
                &mut value_rng,
                &mut arena.bytes_mut(total)[start..start + size],
            );
            spans.push((start, size));
            start += size;
        }
        Workload {
            seed,
            keys: Packed::new(&keys),
            absent: Packed::new(&absent),
            arena,
            spans,
        }
    }

    /// Number of stored values.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// The `i`th key.
    pub fn key(&self, i: usize) -> &[u8] {
        self.keys.get(i)
    }

    /// The `i`th value.
    pub fn value(&self, i: usize) -> &[u8] {
        let (start, len) = self.spans[i];
        &self.arena.bytes(start + len)[start..]
    }

    /// Keys that are never stored.
    pub fn absent_keys(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        (0..self.absent.spans.len()).map(|i| self.absent.get(i))
    }

    /// Sum of all value sizes.
    pub fn value_bytes(&self) -> u64 {
        self.spans.iter().map(|s| s.1 as u64).sum()
    }

    /// Sum of the sizes of the values at `indices`.
    pub fn bytes_of(&self, indices: &[usize]) -> u64 {
        indices.iter().map(|&i| self.spans[i].1 as u64).sum()
    }

    /// Value sizes, sorted: for the median.
    pub fn sorted_sizes(&self) -> Vec<usize> {
        let mut sizes: Vec<usize> = self.spans.iter().map(|s| s.1).collect();
        sizes.sort_unstable();
        sizes
    }

    /// `0..len` in an order drawn from the seed and `salt`.
    pub fn shuffled(&self, salt: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.len()).collect();
        Rng::new(self.seed, 100 + salt).shuffle(&mut order);
        order
    }
}

/// The fields of a W1 key, decoded from its canonical bytes: what a
/// compiler would build its composite key from.
#[derive(Debug, PartialEq, Eq)]
pub struct KeyFields<'a> {
    pub package: &'a str,
    pub function: &'a str,
    pub type_args: Vec<&'a str>,
    pub body_hash: [u8; 32],
    pub type_defs: Vec<[u8; 32]>,
}

/// Decodes a key made by [`Workload::generate`]; `None` if it is not one.
pub fn key_fields(bytes: &[u8]) -> Option<KeyFields<'_>> {
    fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, tail) = rest.split_at_checked(n)?;
        *rest = tail;
        Some(head)
    }
    fn string<'a>(rest: &mut &'a [u8]) -> Option<&'a str> {
        let len = take(rest, 2)?;
        let len = usize::from(u16::from_le_bytes([len[0], len[1]]));
        std::str::from_utf8(take(rest, len)?).ok()
    }
    fn hash(rest: &mut &[u8]) -> Option<[u8; 32]> {
        take(rest, 32)?.try_into().ok()
    }
    let mut rest = bytes;
    if take(&mut rest, 1)? != [1] {
        return None;
    }
    let package = string(&mut rest)?;
    let function = string(&mut rest)?;
    let n = take(&mut rest, 1)?[0];
    let type_args = (0..n).map(|_| string(&mut rest)).collect::<Option<_>>()?;
    let body_hash = hash(&mut rest)?;
    let m = take(&mut rest, 1)?[0];
    let type_defs = (0..m).map(|_| hash(&mut rest)).collect::<Option<_>>()?;
    rest.is_empty().then_some(KeyFields {
        package,
        function,
        type_args,
        body_hash,
        type_defs,
    })
}

fn make_key(rng: &mut Rng, packages: &[String]) -> Vec<u8> {
    let package = &packages[rng.below(packages.len() as u64) as usize];
    let function = format!("fn_{}", rng.below(5_000));
    let mut key = Vec::with_capacity(160);
    key.push(1);
    push_str(&mut key, package);
    push_str(&mut key, &function);
    let type_args = rng.below(4) as u8;
    key.push(type_args);
    for _ in 0..type_args {
        push_str(&mut key, TYPES[rng.below(TYPES.len() as u64) as usize]);
    }
    key.extend_from_slice(&rng.hash32());
    let type_defs = rng.below(4) as u8;
    key.push(type_defs);
    for _ in 0..type_defs {
        key.extend_from_slice(&rng.hash32());
    }
    key
}

fn push_str(key: &mut Vec<u8>, s: &str) {
    key.extend_from_slice(&(s.len() as u16).to_le_bytes());
    key.extend_from_slice(s.as_bytes());
}

/// 60% 256 B–4 KiB, 30% 4–32 KiB, 10% 32–256 KiB; log-uniform in each band.
fn value_size(rng: &mut Rng) -> usize {
    let band = rng.below(10);
    let (lo, hi): (f64, f64) = match band {
        0..=5 => (256.0, 4096.0),
        6..=8 => (4096.0, 32768.0),
        _ => (32768.0, 262_144.0),
    };
    (lo * (hi / lo).powf(rng.unit())) as usize
}

/// Alternates runs of random bytes and runs of token text, half and half.
pub fn fill_value(rng: &mut Rng, out: &mut [u8]) {
    let mut pos = 0;
    let mut random_run = true;
    while pos < out.len() {
        let run = (64 + rng.below(448) as usize).min(out.len() - pos);
        let slot = &mut out[pos..pos + run];
        if random_run {
            rng.fill(slot);
        } else {
            fill_tokens(rng, slot);
        }
        pos += run;
        random_run = !random_run;
    }
}

fn fill_tokens(rng: &mut Rng, out: &mut [u8]) {
    let mut pos = 0;
    while pos < out.len() {
        let bits = rng.next_u64();
        let token = TOKENS[(bits % TOKENS.len() as u64) as usize].as_bytes();
        let sep: &[u8] = if bits & (1 << 60) != 0 {
            b"\n    "
        } else {
            b" "
        };
        for &b in token.iter().chain(sep) {
            if pos == out.len() {
                return;
            }
            out[pos] = b;
            pos += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_from_the_seed() {
        let a = Workload::generate(200, 9);
        let b = Workload::generate(200, 9);
        let c = Workload::generate(200, 10);
        assert_eq!(a.key(17), b.key(17));
        assert_eq!(a.value(17), b.value(17));
        assert_ne!(a.value(17), c.value(17));
        assert_eq!(a.shuffled(1), b.shuffled(1));
    }

    #[test]
    fn keys_decode_into_their_fields() {
        let w = Workload::generate(500, 4);
        let mut with_args = 0;
        for i in 0..w.len() {
            let f = key_fields(w.key(i)).expect("a W1 key decodes");
            assert!(f.package.starts_with("pkg_") && f.function.starts_with("fn_"));
            assert!(f.type_args.len() <= 3 && f.type_defs.len() <= 3);
            with_args += usize::from(!f.type_args.is_empty());
        }
        assert!(with_args > 0);
        let key = w.key(0);
        assert_eq!(key_fields(&key[..key.len() - 1]), None);
        let mut longer = key.to_vec();
        longer.push(0);
        assert_eq!(key_fields(&longer), None);
    }

    #[test]
    fn absent_keys_are_never_stored_keys() {
        let w = Workload::generate(1_000, 3);
        let stored: HashSet<&[u8]> = (0..w.len()).map(|i| w.key(i)).collect();
        assert_eq!(w.absent_keys().len(), 500);
        assert!(w.absent_keys().all(|k| !stored.contains(k)));
    }

    #[test]
    fn sizes_follow_the_bands() {
        let w = Workload::generate(20_000, 1);
        let sizes = w.sorted_sizes();
        let small = sizes.iter().filter(|&&s| s < 4096).count() as f64 / sizes.len() as f64;
        let large = sizes.iter().filter(|&&s| s >= 32768).count() as f64 / sizes.len() as f64;
        assert!((0.57..0.63).contains(&small), "{small}");
        assert!((0.08..0.12).contains(&large), "{large}");
        assert!(sizes[0] >= 256 && sizes[sizes.len() - 1] <= 262_144);
        let mean = w.value_bytes() as f64 / sizes.len() as f64;
        assert!((13_000.0..19_000.0).contains(&mean), "{mean}");
    }
}
