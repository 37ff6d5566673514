//! What the seed note says must happen, computed from the workspace model
//! alone — independently of the hasher, the call-graph code and the store —
//! so that a simulated build's measured outcome can be checked against it.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::workspace::{FnRef, TypeRef, Workspace};

/// One instance key of the model: a generic function and its type arguments.
pub type InstanceKey = (FnRef, Vec<TypeRef>);

/// Every function whose hash must change when the functions in `edited`
/// change: the edited ones and all their transitive callers, in every package.
pub fn rekeyed_functions(ws: &Workspace, edited: &[FnRef]) -> HashSet<FnRef> {
    let mut callers: HashMap<FnRef, Vec<FnRef>> = HashMap::new();
    for (p, package) in ws.packages.iter().enumerate() {
        for (f, function) in package.functions.iter().enumerate() {
            let me = FnRef {
                package: p,
                function: f,
            };
            for call in &function.calls {
                callers.entry(call.target).or_default().push(me);
            }
        }
    }
    let mut seen: HashSet<FnRef> = edited.iter().copied().collect();
    let mut queue: Vec<FnRef> = edited.to_vec();
    while let Some(f) = queue.pop() {
        for &caller in callers.get(&f).map_or(&[][..], Vec::as_slice) {
            if seen.insert(caller) {
                queue.push(caller);
            }
        }
    }
    seen
}

/// The distinct instance keys a whole-workspace build looks up: every call
/// to a generic function, by callee and type arguments.
pub fn instance_keys(ws: &Workspace) -> BTreeSet<InstanceKey> {
    let mut keys = BTreeSet::new();
    for package in &ws.packages {
        for function in &package.functions {
            for call in &function.calls {
                if ws.function(call.target).type_params > 0 {
                    keys.insert((call.target, call.type_args.clone()));
                }
            }
        }
    }
    keys
}

/// Instance keys that change when `rekeyed` functions and `types` change.
pub fn rekeyed_instances(
    ws: &Workspace,
    rekeyed: &HashSet<FnRef>,
    types: &[TypeRef],
) -> BTreeSet<InstanceKey> {
    instance_keys(ws)
        .into_iter()
        .filter(|(f, args)| rekeyed.contains(f) || args.iter().any(|t| types.contains(t)))
        .collect()
}

/// Non-generic functions among `functions` (the ones compiled on their own,
/// so the ones with a function-tier key).
pub fn non_generic(ws: &Workspace, functions: &HashSet<FnRef>) -> usize {
    functions
        .iter()
        .filter(|f| ws.function(**f).type_params == 0)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::workspace::Scale;

    #[test]
    fn a_leaf_edit_rekeys_only_its_callers() {
        let ws = Workspace::generate(Scale::S, 1);
        // A function nobody calls rekeys only itself.
        let called: HashSet<FnRef> = ws
            .packages
            .iter()
            .flat_map(|p| &p.functions)
            .flat_map(|f| f.calls.iter().map(|c| c.target))
            .collect();
        let uncalled = (0..ws.packages[1].functions.len())
            .map(|f| FnRef {
                package: 1,
                function: f,
            })
            .find(|f| !called.contains(f))
            .unwrap();
        assert_eq!(rekeyed_functions(&ws, &[uncalled]).len(), 1);
        // The last function of package 0 is called by someone, so more re-key.
        let callee = *called.iter().find(|f| f.package == 0).unwrap();
        assert!(rekeyed_functions(&ws, &[callee]).len() > 1);
        assert!(!instance_keys(&ws).is_empty());
    }
}
