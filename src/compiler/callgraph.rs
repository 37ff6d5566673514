//! Merkle hashing over one package's call graph.
//!
//! The compiler hashes each function body with
//! [`SemanticHasher`](crate::compiler::SemanticHasher) (feeding callee
//! *identities* but not callee hashes), then hands the whole package to
//! [`hash_call_graph`]: each function with its body hash, the functions of
//! the same package it calls, and the functions of other packages it calls
//! with the hashes that package's metadata exports. The result is each
//! function's *final* hash, which folds in its callees' final hashes, so a
//! change anywhere below a function changes the function's hash.
//!
//! # Encoding (version 1)
//!
//! Strongly connected components are found with an iterative Tarjan pass
//! (no recursion, so a 100,000-deep call chain is fine) and hashed callees
//! first. A function that is not recursive gets
//! `BLAKE3-derive_key(FUNCTION_CONTEXT, …)`; every member of a recursive
//! group (an SCC of two or more functions, or a function that calls itself)
//! gets the *same* `BLAKE3-derive_key(GROUP_CONTEXT, …)`, computed over the
//! members sorted by id. The exact bytes are in `docs/FORMAT.md`, section
//! "Call graph hashes".
//!
//! # Invariants
//!
//! - The result depends only on the set of functions and their content:
//!   never on input order, callee list order or duplicates, hash-map
//!   iteration order, or the run.
//! - A function's hash changes exactly when its own body hash, its callee
//!   set, or the final hash of some function it reaches changes; in a
//!   recursive group, a change to any member changes every member.
//! - Bad input (duplicate ids, unknown callees, one external callee with
//!   two hashes) is an [`Error::InvalidCallGraph`], never a panic.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::compiler::hasher::SemanticHash;
use crate::error::{Error, Result};

/// BLAKE3 key-derivation context for the final hash of a non-recursive function.
pub const FUNCTION_CONTEXT: &str = "rask-store 2026-11-21 call graph function v1";
/// BLAKE3 key-derivation context for the shared hash of a recursive group.
pub const GROUP_CONTEXT: &str = "rask-store 2026-11-21 call graph group v1";

/// A call into another package, with the hash that package's metadata
/// exports for the callee.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExternalCallee {
    /// The callee's package.
    pub package: String,
    /// The callee's function id within its package.
    pub function: String,
    /// The callee's hash from the package's metadata.
    pub hash: SemanticHash,
}

/// One function of the package, as input to [`hash_call_graph`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionNode {
    /// The function's id, unique within the package.
    pub id: String,
    /// The hash of its own body, from the semantic hasher.
    pub body_hash: SemanticHash,
    /// Ids of the functions of this package it calls (any order; duplicates
    /// are ignored).
    pub callees: Vec<String>,
    /// Functions of other packages it calls (any order; exact duplicates
    /// are ignored).
    pub external_callees: Vec<ExternalCallee>,
}

/// One function's final hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashedFunction {
    /// The function's id.
    pub id: String,
    /// Its final (Merkle) hash.
    pub hash: SemanticHash,
    /// Index into [`CallGraphHashes::recursive_groups`] when the function is
    /// part of a recursive group.
    pub group: Option<usize>,
}

/// The final hashes of one package's functions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallGraphHashes {
    /// Sorted by id.
    functions: Vec<HashedFunction>,
    /// Each group's members as positions in `functions`, sorted by id.
    groups: Vec<Vec<usize>>,
}

impl CallGraphHashes {
    /// The final hash of function `id`, if it is in the package.
    pub fn get(&self, id: &str) -> Option<SemanticHash> {
        self.position(id).map(|i| self.functions[i].hash)
    }

    /// Every function with its final hash, sorted by id.
    pub fn functions(&self) -> &[HashedFunction] {
        &self.functions
    }

    /// Number of functions.
    pub fn len(&self) -> usize {
        self.functions.len()
    }

    /// True when the package has no functions.
    pub fn is_empty(&self) -> bool {
        self.functions.is_empty()
    }

    /// The recursive groups (SCCs of two or more functions, or functions
    /// that call themselves), each as its member ids sorted.
    pub fn recursive_groups(&self) -> impl Iterator<Item = Vec<&str>> + '_ {
        self.groups.iter().map(|members| {
            members
                .iter()
                .map(|&i| self.functions[i].id.as_str())
                .collect()
        })
    }

    /// The ids of the recursive group `id` belongs to, sorted; `None` when
    /// `id` is unknown or not recursive.
    pub fn group_of(&self, id: &str) -> Option<Vec<&str>> {
        let group = self.functions[self.position(id)?].group?;
        self.groups.get(group).map(|members| {
            members
                .iter()
                .map(|&i| self.functions[i].id.as_str())
                .collect()
        })
    }

    fn position(&self, id: &str) -> Option<usize> {
        self.functions
            .binary_search_by(|f| f.id.as_str().cmp(id))
            .ok()
    }
}

const UNVISITED: u32 = u32::MAX;

/// Computes every function's final Merkle hash, callees first, with
/// recursive groups hashed as one.
///
/// # Errors
/// [`Error::InvalidCallGraph`] when two functions share an id, a function
/// names an intra-package callee that is not in `functions`, one external
/// callee is given two different hashes, or the package has more than
/// `u32::MAX - 1` functions.
pub fn hash_call_graph(functions: &[FunctionNode]) -> Result<CallGraphHashes> {
    let n = functions.len();
    if n >= UNVISITED as usize {
        return Err(invalid(format!(
            "{n} functions is more than one package can hold"
        )));
    }

    // rank[i]: position of function i when sorted by id. Sorting callee
    // lists by rank sorts them by id, which is what the encoding needs.
    let mut by_id: Vec<u32> = (0..n as u32).collect();
    by_id.sort_unstable_by(|&a, &b| functions[a as usize].id.cmp(&functions[b as usize].id));
    let mut rank = vec![0u32; n];
    for (r, &i) in by_id.iter().enumerate() {
        rank[i as usize] = r as u32;
    }
    for pair in by_id.windows(2) {
        if functions[pair[0] as usize].id == functions[pair[1] as usize].id {
            return Err(invalid(format!(
                "function id {:?} appears more than once",
                functions[pair[0] as usize].id
            )));
        }
    }
    let index: HashMap<&str, u32, BuildHasherDefault<Fnv1a>> = functions
        .iter()
        .enumerate()
        .map(|(i, f)| (f.id.as_str(), i as u32))
        .collect();

    // Edges in CSR form, each function's callees sorted by id, deduplicated.
    let mut offsets = Vec::with_capacity(n + 1);
    let mut targets: Vec<u32> = Vec::new();
    offsets.push(0usize);
    for f in functions {
        let start = targets.len();
        for callee in &f.callees {
            let Some(&c) = index.get(callee.as_str()) else {
                return Err(invalid(format!(
                    "function {:?} calls {callee:?}, which is not a function of this package \
                     (calls into other packages go in external_callees)",
                    f.id
                )));
            };
            targets.push(c);
        }
        let list = &mut targets[start..];
        list.sort_unstable_by_key(|&c| rank[c as usize]);
        let mut kept = start;
        for j in start..targets.len() {
            if kept == start || targets[kept - 1] != targets[j] {
                targets[kept] = targets[j];
                kept += 1;
            }
        }
        targets.truncate(kept);
        offsets.push(targets.len());
    }
    let edges = |v: usize| &targets[offsets[v]..offsets[v + 1]];

    // External callees, sorted by (package, function), deduplicated.
    let mut externals: Vec<Vec<&ExternalCallee>> = Vec::with_capacity(n);
    for f in functions {
        let mut list: Vec<&ExternalCallee> = f.external_callees.iter().collect();
        list.sort_unstable();
        list.dedup();
        for pair in list.windows(2) {
            if pair[0].package == pair[1].package && pair[0].function == pair[1].function {
                return Err(invalid(format!(
                    "function {:?} calls {}.{} with two different hashes ({} and {})",
                    f.id, pair[0].package, pair[0].function, pair[0].hash, pair[1].hash
                )));
            }
        }
        externals.push(list);
    }

    let mut final_hash: Vec<Option<SemanticHash>> = vec![None; n];
    let mut group_of: Vec<Option<usize>> = vec![None; n];
    let mut groups_by_input: Vec<Vec<u32>> = Vec::new();

    // Iterative Tarjan. SCCs pop callees first, so every callee outside the
    // SCC being popped already has its final hash.
    let mut order = vec![UNVISITED; n];
    let mut low = vec![0u32; n];
    let mut on_stack = vec![false; n];
    let mut stack: Vec<u32> = Vec::new();
    let mut call: Vec<(u32, usize)> = Vec::new();
    let mut counter = 0u32;
    let mut members: Vec<u32> = Vec::new();
    let mut buf: Vec<u8> = Vec::with_capacity(256);
    for start in 0..n {
        if order[start] != UNVISITED {
            continue;
        }
        order[start] = counter;
        low[start] = counter;
        counter += 1;
        stack.push(start as u32);
        on_stack[start] = true;
        call.push((start as u32, 0));
        while let Some(top) = call.last_mut() {
            let v = top.0 as usize;
            let out = edges(v);
            if let Some(&w) = out.get(top.1) {
                top.1 += 1;
                let w = w as usize;
                if order[w] == UNVISITED {
                    order[w] = counter;
                    low[w] = counter;
                    counter += 1;
                    stack.push(w as u32);
                    on_stack[w] = true;
                    call.push((w as u32, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(order[w]);
                }
                continue;
            }
            call.pop();
            if let Some(&(parent, _)) = call.last() {
                let parent = parent as usize;
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] != order[v] {
                continue;
            }
            members.clear();
            while let Some(w) = stack.pop() {
                on_stack[w as usize] = false;
                members.push(w);
                if w as usize == v {
                    break;
                }
            }
            let recursive = members.len() > 1 || edges(v).contains(&(v as u32));
            if recursive {
                members.sort_unstable_by_key(|&m| rank[m as usize]);
                let group = groups_by_input.len();
                for &m in &members {
                    group_of[m as usize] = Some(group);
                }
                let hash = group_hash(
                    &mut buf,
                    functions,
                    &members,
                    &edges,
                    &externals,
                    &group_of,
                    &final_hash,
                );
                for &m in &members {
                    final_hash[m as usize] = Some(hash);
                }
                groups_by_input.push(members.clone());
            } else {
                let hash = function_hash(
                    &mut buf,
                    &functions[v],
                    edges(v),
                    functions,
                    &externals[v],
                    &final_hash,
                );
                final_hash[v] = Some(hash);
            }
        }
    }

    let mut out = Vec::with_capacity(n);
    for &i in &by_id {
        let i = i as usize;
        let Some(hash) = final_hash[i] else {
            return Err(invalid(format!(
                "function {:?} was never hashed",
                functions[i].id
            )));
        };
        out.push(HashedFunction {
            id: functions[i].id.clone(),
            hash,
            group: None,
        });
    }
    // Number groups in id order of their first member, for a stable result.
    groups_by_input.sort_unstable_by_key(|members| members.first().map(|&m| rank[m as usize]));
    let mut groups = Vec::with_capacity(groups_by_input.len());
    for (g, members) in groups_by_input.iter().enumerate() {
        let positions: Vec<usize> = members.iter().map(|&m| rank[m as usize] as usize).collect();
        for &p in &positions {
            out[p].group = Some(g);
        }
        groups.push(positions);
    }
    Ok(CallGraphHashes {
        functions: out,
        groups,
    })
}

fn invalid(reason: String) -> Error {
    Error::InvalidCallGraph { reason }
}

/// FNV-1a, for the id lookup table only: ids come from the compiler, so
/// there is no untrusted input to defend against, and it is several times
/// faster than SipHash on short ids. Never part of any output.
#[derive(Default)]
struct Fnv1a(u64);

impl Hasher for Fnv1a {
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = h;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

fn put_u64(buf: &mut Vec<u8>, value: u64) {
    buf.extend_from_slice(&value.to_le_bytes());
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    put_u64(buf, s.len() as u64);
    buf.extend_from_slice(s.as_bytes());
}

fn put_externals(buf: &mut Vec<u8>, externals: &[&ExternalCallee]) {
    put_u64(buf, externals.len() as u64);
    for e in externals {
        put_str(buf, &e.package);
        put_str(buf, &e.function);
        buf.extend_from_slice(e.hash.as_bytes());
    }
}

/// Callees outside the current SCC, each with its final hash (always known:
/// Tarjan finishes callee SCCs first).
fn put_finished_callees<'c>(
    buf: &mut Vec<u8>,
    callees: impl ExactSizeIterator<Item = &'c u32>,
    functions: &[FunctionNode],
    final_hash: &[Option<SemanticHash>],
) {
    put_u64(buf, callees.len() as u64);
    for &c in callees {
        debug_assert!(final_hash[c as usize].is_some(), "callee hashed first");
        put_str(buf, &functions[c as usize].id);
        let hash = final_hash[c as usize].unwrap_or(SemanticHash::from_bytes([0; 32]));
        buf.extend_from_slice(hash.as_bytes());
    }
}

fn finish(context: &str, buf: &[u8]) -> SemanticHash {
    SemanticHash::from(
        blake3::Hasher::new_derive_key(context)
            .update(buf)
            .finalize(),
    )
}

fn function_hash(
    buf: &mut Vec<u8>,
    f: &FunctionNode,
    callees: &[u32],
    functions: &[FunctionNode],
    externals: &[&ExternalCallee],
    final_hash: &[Option<SemanticHash>],
) -> SemanticHash {
    buf.clear();
    put_str(buf, &f.id);
    buf.extend_from_slice(f.body_hash.as_bytes());
    put_finished_callees(buf, callees.iter(), functions, final_hash);
    put_externals(buf, externals);
    finish(FUNCTION_CONTEXT, buf)
}

fn group_hash<'e>(
    buf: &mut Vec<u8>,
    functions: &[FunctionNode],
    members: &[u32],
    edges: &impl Fn(usize) -> &'e [u32],
    externals: &[Vec<&ExternalCallee>],
    group_of: &[Option<usize>],
    final_hash: &[Option<SemanticHash>],
) -> SemanticHash {
    let group = members.first().and_then(|&m| group_of[m as usize]);
    buf.clear();
    put_u64(buf, members.len() as u64);
    for &m in members {
        let m = m as usize;
        let f = &functions[m];
        put_str(buf, &f.id);
        buf.extend_from_slice(f.body_hash.as_bytes());
        let (inner, outer): (Vec<&u32>, Vec<&u32>) = edges(m)
            .iter()
            .partition(|&&c| group.is_some() && group_of[c as usize] == group);
        put_u64(buf, inner.len() as u64);
        for &&c in &inner {
            put_str(buf, &functions[c as usize].id);
        }
        put_finished_callees(buf, outer.into_iter(), functions, final_hash);
        put_externals(buf, &externals[m]);
    }
    finish(GROUP_CONTEXT, buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(text: &str) -> SemanticHash {
        SemanticHash::from(blake3::hash(text.as_bytes()))
    }

    fn node(id: &str, text: &str, callees: &[&str]) -> FunctionNode {
        FunctionNode {
            id: id.into(),
            body_hash: body(text),
            callees: callees.iter().map(|c| c.to_string()).collect(),
            external_callees: Vec::new(),
        }
    }

    #[test]
    fn seed_example_compare_change_reaches_swap_and_sort_only() {
        let graph = |compare_body: &str| {
            vec![
                node("sort", "sort body", &["swap"]),
                node("swap", "swap body", &["compare"]),
                node("compare", compare_body, &[]),
                node("unrelated", "other body", &[]),
            ]
        };
        let before = hash_call_graph(&graph("a < b")).unwrap();
        let after = hash_call_graph(&graph("a <= b")).unwrap();
        for changed in ["compare", "swap", "sort"] {
            assert_ne!(before.get(changed), after.get(changed), "{changed}");
        }
        assert_eq!(before.get("unrelated"), after.get("unrelated"));
        assert_eq!(before.recursive_groups().count(), 0);
    }

    #[test]
    fn leaf_hash_is_documented_encoding() {
        let f = node("leaf", "x", &[]);
        let hashes = hash_call_graph(std::slice::from_ref(&f)).unwrap();
        let mut h = blake3::Hasher::new_derive_key(FUNCTION_CONTEXT);
        h.update(&4u64.to_le_bytes());
        h.update(b"leaf");
        h.update(f.body_hash.as_bytes());
        h.update(&0u64.to_le_bytes());
        h.update(&0u64.to_le_bytes());
        assert_eq!(hashes.get("leaf"), Some(SemanticHash::from(h.finalize())));
    }

    #[test]
    fn self_recursion_is_a_group_of_one() {
        let hashes =
            hash_call_graph(&[node("loop", "x", &["loop"]), node("top", "y", &["loop"])]).unwrap();
        assert_eq!(hashes.group_of("loop"), Some(vec!["loop"]));
        assert_eq!(hashes.group_of("top"), None);
        assert_eq!(hashes.group_of("missing"), None);
    }

    #[test]
    fn bad_graphs_are_errors() {
        let dup = hash_call_graph(&[node("a", "1", &[]), node("a", "2", &[])]).unwrap_err();
        assert!(
            dup.to_string().contains("\"a\" appears more than once"),
            "{dup}"
        );
        let unknown = hash_call_graph(&[node("a", "1", &["b"])]).unwrap_err();
        assert!(unknown.to_string().contains("calls \"b\""), "{unknown}");
        let mut f = node("a", "1", &[]);
        for text in ["v1", "v2"] {
            f.external_callees.push(ExternalCallee {
                package: "std".into(),
                function: "print".into(),
                hash: body(text),
            });
        }
        let conflict = hash_call_graph(&[f]).unwrap_err();
        assert!(
            conflict.to_string().contains("two different hashes"),
            "{conflict}"
        );
    }

    #[test]
    fn duplicate_callees_do_not_matter() {
        let once = hash_call_graph(&[node("a", "1", &["b"]), node("b", "2", &[])]).unwrap();
        let twice = hash_call_graph(&[node("a", "1", &["b", "b"]), node("b", "2", &[])]).unwrap();
        assert_eq!(once, twice);
    }
}
