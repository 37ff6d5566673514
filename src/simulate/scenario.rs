//! The scenarios of the seed note, run against a real store, each checked
//! against what the note says must happen (computed by [`super::oracle`]
//! from the workspace model alone).

use std::cell::Cell;
use std::collections::{BTreeSet, HashSet};
use std::time::Instant;

use super::build::{BuildOutcome, Builder};
use super::concurrent::{self, BuilderLauncher};
use super::oracle;
use super::workspace::{FnRef, Scale, TypeRef, Workspace};
use crate::clean;
use crate::compiler::{CompilerId, diff};
use crate::error::Result;
use crate::index::Index;
use crate::key::{Component, Key};
use crate::name::Namespace;
use crate::store::Store;

/// One scenario's result.
#[derive(Clone, Debug)]
pub struct ScenarioResult {
    /// Its name.
    pub name: &'static str,
    /// The build (or the last build) it ran; empty for the JIT scenario.
    pub outcome: BuildOutcome,
    /// What the seed note says must happen.
    pub expected: String,
    /// What happened.
    pub measured: String,
    /// Whether the two agree.
    pub ok: bool,
}

/// How to run the scenarios.
#[derive(Clone, Copy, Debug)]
pub struct SimulateOptions {
    /// Workspace size.
    pub scale: Scale,
    /// Seed of the workspace.
    pub seed: u64,
    /// Expressions in the JIT scenario.
    pub jit_entries: usize,
}

pub(super) fn compiler(version: &str, profile: &str) -> CompilerId {
    CompilerId::new("rask", version).with_setting("profile", profile)
}

fn summary(o: &BuildOutcome) -> String {
    format!(
        "{} built, {} skipped; misses: parse {}/{}, function {}/{}, instance {}/{}, comptime {}/{}",
        o.built,
        o.skipped,
        o.parse.misses,
        o.parse.lookups,
        o.function.misses,
        o.function.lookups,
        o.instance.misses,
        o.instance.lookups,
        o.comptime.misses,
        o.comptime.lookups
    )
}

pub(super) fn non_generic(ws: &Workspace, set: &HashSet<FnRef>) -> BTreeSet<FnRef> {
    set.iter()
        .copied()
        .filter(|f| ws.function(*f).type_params == 0)
        .collect()
}

fn result(name: &'static str, outcome: BuildOutcome, expected: String, ok: bool) -> ScenarioResult {
    let mut measured = summary(&outcome);
    // Every scenario also requires each hit to give what compiling gives.
    let ok = ok && outcome.wrong_hits == 0;
    if outcome.wrong_hits > 0 {
        measured.push_str(&format!(
            "; {} hits returned wrong bytes",
            outcome.wrong_hits
        ));
    }
    ScenarioResult {
        name,
        outcome,
        expected,
        measured,
        ok,
    }
}

/// An edit's expected re-keying, checked against a build.
fn check_rekey(
    name: &'static str,
    ws: &Workspace,
    outcome: BuildOutcome,
    edited: &[FnRef],
    types: &[TypeRef],
) -> ScenarioResult {
    let rekeyed = oracle::rekeyed_functions(ws, edited);
    let functions = non_generic(ws, &rekeyed);
    let instances = oracle::rekeyed_instances(ws, &rekeyed, types);
    let ok = rekey_matches(ws, &outcome, edited, types);
    let expected = format!(
        "exactly the transitive callers re-key: {} functions, {} instances",
        functions.len(),
        instances.len()
    );
    result(name, outcome, expected, ok)
}

/// Whether a build after an edit re-keyed exactly what the oracle says: the
/// sets match, and each missed key was looked up (and compiled) once (an
/// instance shared by several packages is built by the first only).
pub(super) fn rekey_matches(
    ws: &Workspace,
    outcome: &BuildOutcome,
    edited: &[FnRef],
    types: &[TypeRef],
) -> bool {
    let rekeyed = oracle::rekeyed_functions(ws, edited);
    let functions = non_generic(ws, &rekeyed);
    let instances = oracle::rekeyed_instances(ws, &rekeyed, types);
    outcome.missed_functions == functions
        && outcome.missed_instances == instances
        && outcome.function.misses == functions.len() as u64
        && outcome.instance.misses == instances.len() as u64
}

/// How the JIT scenario reloads what it wrote: given the store and the
/// number of entries, return how many came back byte-identical. The CLI
/// runs [`jit_reload`] in a second process; in-process callers can pass
/// `&|store, n| jit_reload(&Store::open(store.root(), store.options())?, n)`.
pub type JitReloader<'a> = &'a dyn Fn(&Store, usize) -> Result<usize>;

/// Runs every scenario in order on `store`; `progress` is told each
/// scenario's name as it starts, and each package as a build reaches it.
/// `reload` runs the JIT scenario's second process, `launch` starts the
/// concurrency scenario's builder processes.
///
/// # Errors
/// Store, index and hasher errors (a scenario whose outcome differs from
/// the expectation is reported in its result, not as an error).
pub fn run(
    store: &Store,
    options: SimulateOptions,
    reload: JitReloader<'_>,
    launch: BuilderLauncher<'_>,
    progress: &dyn Fn(&str),
) -> Result<Vec<ScenarioResult>> {
    let index = Index::open(store)?;
    let mut results = Vec::new();
    let a = compiler("0.9.0", "debug");
    let mut ws = Workspace::generate(options.scale, options.seed);
    let scenario = Cell::new("");
    let packages_progress = |done: usize, total: usize| {
        progress(&format!("{}: package {}/{total}", scenario.get(), done + 1));
    };
    let mut builder = Builder::new(store, &index, &packages_progress);
    let start = |name: &'static str| {
        scenario.set(name);
        progress(name);
    };
    let packages = ws.packages.len();

    start("cold build");
    let out = builder.build(&ws, &a)?;
    let ok = is_cold(&ws, &out);
    results.push(result("cold build", out, cold_expectation(&ws), ok));

    start("no-op rebuild");
    let out = builder.build(&ws, &a)?;
    let ok = out.skipped == packages && out.lookups() == 0;
    results.push(result(
        "no-op rebuild",
        out,
        format!("quick path skips all {packages} packages, 0 lookups"),
        ok,
    ));

    start("cosmetic edit");
    let mut edited_files = 0u64;
    for p in [0, packages - 1] {
        for file in ws.packages[p].files.iter_mut().step_by(3) {
            file.cosmetic += 1;
            edited_files += 1;
        }
    }
    // A local rename in a function of a file that had no comment edit.
    let renamed_file = ws.packages[0].functions[1].file;
    if !renamed_file.is_multiple_of(3) {
        edited_files += 1;
    }
    ws.packages[0].functions[1].names_seed ^= 0x5eed;
    let out = builder.build(&ws, &a)?;
    let ok = out.parse.misses == edited_files
        && out.function.misses + out.instance.misses + out.comptime.misses == 0;
    results.push(result(
        "cosmetic edit",
        out,
        format!("{edited_files} files re-parse; 100% function, instance and comptime hits"),
        ok,
    ));

    start("leaf body edit");
    let leaf = pick_leaf(&ws);
    ws.packages[leaf.package].functions[leaf.function].body_seed ^= 1;
    let out = builder.build(&ws, &a)?;
    results.push(check_rekey("leaf body edit", &ws, out, &[leaf], &[]));

    start("recursive group edit");
    let member = pick_group_member(&ws);
    ws.packages[member.package].functions[member.function].body_seed ^= 1;
    let out = builder.build(&ws, &a)?;
    results.push(check_rekey(
        "edit in a recursive group",
        &ws,
        out,
        &[member],
        &[],
    ));

    start("type definition edit");
    let ty = TypeRef::Defined { package: 0, ty: 0 };
    ws.packages[0].types[0].fields.push("added".into());
    let out = builder.build(&ws, &a)?;
    results.push(check_rekey("type definition edit", &ws, out, &[], &[ty]));

    start("upstream signature change");
    let before = results_metadata(&results);
    let public = pick_public_called_downstream(&ws);
    ws.packages[0].functions[public.function].params += 1;
    let out = builder.build(&ws, &a)?;
    let changed = before.as_ref().is_some_and(|old| {
        diff(old, &out.metadata[0])
            .changed_functions
            .iter()
            .any(|c| c.id == ws.function(public).name && c.signature_changed)
    });
    let mut row = check_rekey("upstream signature change", &ws, out, &[public], &[]);
    row.ok &= changed;
    row.expected
        .push_str("; metadata diff names the signature change");
    results.push(row);

    start("compiler upgrade");
    let upgraded = compiler("0.10.0", "debug");
    let out = builder.build(&ws, &upgraded)?;
    let misses_all = is_cold(&ws, &out);
    let old_ns = a.namespace()?;
    let cleaned = clean::clean_namespace(store, &index, &old_ns)?;
    let gone = store.list_refs(&old_ns)?.is_empty() && cleaned.objects > 0;
    let again = builder.build(&ws, &upgraded)?;
    let warm = again.skipped == packages;
    let mut row = result(
        "compiler upgrade + gc of the old namespace",
        out,
        format!(
            "new namespace is cold ({}); old namespace collected; new one stays warm",
            cold_expectation(&ws)
        ),
        misses_all && gone && warm,
    );
    row.measured.push_str(&format!(
        "; old namespace: {} refs, {} objects deleted; rebuild skipped {}/{packages}",
        cleaned.refs, cleaned.objects, again.skipped
    ));
    results.push(row);

    start("two compilers alternating");
    let release = compiler("0.10.0", "release");
    let cold_b = builder.build(&ws, &release)?;
    let warm_a = builder.build(&ws, &upgraded)?;
    let warm_b = builder.build(&ws, &release)?;
    let ok = cold_b.skipped == 0 && warm_a.skipped == packages && warm_b.skipped == packages;
    let mut row = result(
        "two compilers alternating",
        warm_b,
        "each stays warm: the other's builds never evict it".into(),
        ok,
    );
    row.measured = format!(
        "release cold: {} built; debug again: {} skipped; release again: {} skipped",
        cold_b.built, warm_a.skipped, row.outcome.skipped
    );
    results.push(row);

    start("JIT session");
    results.push(jit_write_and_reload(store, options.jit_entries, reload)?);

    start("concurrent builders and gc");
    results.push(concurrent::run(store, options, launch)?);
    Ok(results)
}

/// A build with nothing cached: every distinct key misses once; the only
/// hits are instances a second package shares with the first that built them.
pub(super) fn is_cold(ws: &Workspace, out: &BuildOutcome) -> bool {
    let instances = oracle::instance_keys(ws);
    out.skipped == 0
        && out.parse.hits + out.function.hits + out.comptime.hits == 0
        && out.missed_functions == non_generic(ws, &all_functions(ws))
        && out.function.misses == out.missed_functions.len() as u64
        && out.missed_instances == instances
        && out.instance.misses == instances.len() as u64
}

fn cold_expectation(ws: &Workspace) -> String {
    let instances = oracle::instance_keys(ws).len();
    format!(
        "every parse, function and comptime lookup misses; each of the {instances} distinct \
         instances misses once (a package reusing another's instance hits)"
    )
}

fn results_metadata(results: &[ScenarioResult]) -> Option<crate::compiler::PackageMetadata> {
    results
        .iter()
        .rev()
        .find(|r| !r.outcome.metadata.is_empty())
        .map(|r| r.outcome.metadata[0].clone())
}

fn all_functions(ws: &Workspace) -> HashSet<FnRef> {
    ws.packages
        .iter()
        .enumerate()
        .flat_map(|(p, pkg)| {
            (0..pkg.functions.len()).map(move |f| FnRef {
                package: p,
                function: f,
            })
        })
        .collect()
}

/// A function that calls nothing in its own package (a leaf of the call
/// graph within package 0), preferring one that other functions call.
fn pick_leaf(ws: &Workspace) -> FnRef {
    let fns = &ws.packages[0].functions;
    (0..fns.len())
        .rev()
        .map(|f| FnRef {
            package: 0,
            function: f,
        })
        .find(|r| ws.function(*r).calls.iter().all(|c| c.target.package != 0))
        .unwrap_or(FnRef {
            package: 0,
            function: fns.len() - 1,
        })
}

/// A member of a planted recursive group: a function that calls an earlier
/// function of its own package (the edge that closes a cycle).
pub(super) fn pick_group_member(ws: &Workspace) -> FnRef {
    let p = ws.packages.len() - 1;
    ws.packages[p]
        .functions
        .iter()
        .enumerate()
        .find(|(f, func)| {
            func.calls
                .iter()
                .any(|c| c.target.package == p && c.target.function < *f)
        })
        .map_or(
            FnRef {
                package: p,
                function: 0,
            },
            |(f, _)| FnRef {
                package: p,
                function: f,
            },
        )
}

/// A public function of package 0 that another package calls.
fn pick_public_called_downstream(ws: &Workspace) -> FnRef {
    ws.packages
        .iter()
        .skip(1)
        .flat_map(|p| &p.functions)
        .flat_map(|f| &f.calls)
        .map(|c| c.target)
        .find(|t| t.package == 0)
        .unwrap_or(FnRef {
            package: 0,
            function: 0,
        })
}

/// The jank shape: one entry per expression hash with three parts (C++
/// source, the expression, JSON metadata), written, then reloaded by
/// `reload` (a second process, from the CLI).
fn jit_write_and_reload(
    store: &Store,
    entries: usize,
    reload: JitReloader<'_>,
) -> Result<ScenarioResult> {
    let started = Instant::now();
    let index = Index::open(store)?;
    let ns = Namespace::new("jank-0.1")?;
    for i in 0..entries {
        let (cpp, expr, meta) = jit_parts(i);
        index.put(
            store,
            &jit_key(&ns, i)?,
            crate::object::Kind::Instance,
            &[
                ("cpp", cpp.as_bytes()),
                ("expr", expr.as_bytes()),
                ("meta", meta.as_bytes()),
            ],
        )?;
    }
    store.flush()?;
    let hits = reload(store, entries)?;
    let mut outcome = BuildOutcome::default();
    outcome.instance.lookups = entries as u64;
    outcome.instance.hits = hits as u64;
    outcome.instance.misses = (entries - hits) as u64;
    outcome.wall = started.elapsed();
    Ok(ScenarioResult {
        name: "JIT session (3 parts per expression)",
        outcome,
        expected: format!("{entries} of {entries} reloaded, parts byte-identical"),
        measured: format!("{hits} of {entries} reloaded byte-identical"),
        ok: hits == entries,
    })
}

/// The key of JIT expression `i`.
///
/// # Errors
/// Never in practice.
pub fn jit_key(ns: &Namespace, i: usize) -> Result<Key> {
    let hash = *blake3::hash(format!("expr {i}").as_bytes()).as_bytes();
    Key::new(
        ns.clone(),
        vec![Component::str("jit"), Component::Hash(hash)],
    )
}

/// The three parts of JIT expression `i`.
pub fn jit_parts(i: usize) -> (String, String, String) {
    (
        format!("struct fn_{i} {{ object* call(object* x) {{ return add(x, {i}); }} }};\n")
            .repeat(8),
        format!("(fn [x] (+ x {i}))"),
        format!("{{\"symbol\":\"user/f{i}\",\"unique\":\"fn_{i}\"}}"),
    )
}

/// Reloads every JIT entry and counts those whose three parts are
/// byte-identical to what was written.
///
/// # Errors
/// Store and index errors.
pub fn jit_reload(store: &Store, entries: usize) -> Result<usize> {
    let index = Index::open(store)?;
    let ns = Namespace::new("jank-0.1")?;
    let mut hits = 0;
    for i in 0..entries {
        let (cpp, expr, meta) = jit_parts(i);
        if let crate::index::Lookup::Hit(parts) = index.get_all(store, &jit_key(&ns, i)?)? {
            let got: Vec<(&str, &[u8])> = parts
                .iter()
                .map(|(p, b)| (p.name.as_str(), b.as_slice()))
                .collect();
            let want = [
                ("cpp", cpp.as_bytes()),
                ("expr", expr.as_bytes()),
                ("meta", meta.as_bytes()),
            ];
            if want.iter().all(|w| got.contains(w)) && got.len() == 3 {
                hits += 1;
            }
        }
    }
    Ok(hits)
}
