//! The concurrency scenario: a build, a test run and an editor's checker,
//! each its own process, building on one store at once while gc runs in a
//! loop; then `verify` must find the store clean.
//!
//! Each builder does what the single-process scenarios do — a cold build, an
//! edit inside a recursive group and its rebuild, the edit undone and made
//! again (all hits), then a no-op check — and checks every hit's bytes
//! against what compiling gives. The test run has
//! its namespace to itself, so its hits and misses must be exactly the
//! oracle's. The build and the checker share one namespace and race for its
//! refs: a publish that loses the race fails with a conflict and is built
//! again (a fresh session, which then finds the winner's work), and their
//! misses may only be a subset of the oracle's (the other may have compiled
//! first). gc runs in a loop with the shortest grace period the lock
//! protocol allows while builds run (just over [`FRESHEN_ON_PUT`]) and no
//! reflog protection, so it removes, while the builders run, every root and
//! metadata object older than that whose ref has moved on (at scales M and
//! L, the earlier scenarios leave plenty). It evicts no index entry: an
//! evicted entry is an extra miss, which would blur the exact counts.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::build::{BuildOutcome, Builder, TierOutcome};
use super::oracle;
use super::scenario::{
    ScenarioResult, SimulateOptions, compiler, is_cold, non_generic, pick_group_member,
    rekey_matches,
};
use super::workspace::{Scale, Workspace};
use crate::compiler::CompilerId;
use crate::error::{Error, Result};
use crate::gc::{self, GcOptions, GcPolicy};
use crate::index::Index;
use crate::store::{FRESHEN_ON_PUT, Store, StoreOptions};
use crate::verify::{self, VerifyOptions};

/// One builder process of the concurrency scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuilderRole {
    /// A build (debug profile).
    Build,
    /// A test run (its own profile, so its own namespace).
    Test,
    /// An editor's checker (the build's namespace: the two race).
    Check,
}

impl BuilderRole {
    /// Every role, in the order the scenario starts them.
    pub const ALL: [BuilderRole; 3] = [BuilderRole::Build, BuilderRole::Test, BuilderRole::Check];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            BuilderRole::Build => "build",
            BuilderRole::Test => "test",
            BuilderRole::Check => "check",
        }
    }

    fn compiler(self) -> CompilerId {
        match self {
            BuilderRole::Build | BuilderRole::Check => compiler("1.0.0", "debug"),
            BuilderRole::Test => compiler("1.0.0", "test"),
        }
    }

    /// No other builder shares its namespace, so its counts are exact.
    fn exclusive(self) -> bool {
        self == BuilderRole::Test
    }
}

impl std::str::FromStr for BuilderRole {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<BuilderRole, String> {
        BuilderRole::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| format!("unknown builder role {s:?}; expected build, test or check"))
    }
}

/// Starts the builder of `role` as a separate process on the store (the
/// CLI runs `simulate --concurrent-builder ROLE`, which calls
/// [`concurrent_builder`]) and returns a function that waits for it and
/// returns the line it printed.
pub type BuilderLauncher<'a> =
    &'a dyn Fn(&Store, BuilderRole, SimulateOptions) -> Result<Box<dyn FnOnce() -> Result<String>>>;

/// The workspace the builders build: the run's, but at most scale M, so
/// that the scenario stays a few builds long at scale L.
fn workspace(options: SimulateOptions) -> Workspace {
    let scale = match options.scale {
        Scale::L => Scale::M,
        other => other,
    };
    Workspace::generate(scale, options.seed)
}

/// Builds with `compiler`, building again (a fresh session) each time
/// another builder's publish won the race for a ref.
fn build_until_published(
    builder: &mut Builder<'_>,
    ws: &Workspace,
    role: BuilderRole,
    conflicts: &mut u64,
) -> Result<BuildOutcome> {
    let compiler = role.compiler();
    loop {
        match builder.build(ws, &compiler) {
            Err(Error::Conflict { .. }) if *conflicts < 100 => *conflicts += 1,
            other => return other,
        }
    }
}

/// One builder of the scenario, run in its own process: its builds and
/// checks, summed up in one line that starts with `ok` or `MISMATCH`.
///
/// # Errors
/// Store, index and hasher errors.
pub fn concurrent_builder(
    store: &Store,
    options: SimulateOptions,
    role: BuilderRole,
) -> Result<String> {
    let index = Index::open(store)?;
    let mut ws = workspace(options);
    let packages = ws.packages.len();
    let mut builder = Builder::new(store, &index, &|_, _| {});
    let mut problems = Vec::new();
    let mut conflicts = 0;
    let mut total = BuildOutcome::default();

    let cold = build_until_published(&mut builder, &ws, role, &mut conflicts)?;
    if role.exclusive() && !is_cold(&ws, &cold) {
        problems.push("the cold build did not miss exactly every key once");
    }
    add(&mut total, &cold);

    let member = pick_group_member(&ws);
    ws.packages[member.package].functions[member.function].body_seed ^= 1;
    let edited = build_until_published(&mut builder, &ws, role, &mut conflicts)?;
    let rekeyed = oracle::rekeyed_functions(&ws, &[member]);
    if role.exclusive() {
        if !rekey_matches(&ws, &edited, &[member], &[]) {
            problems.push("the edit did not re-key exactly the transitive callers");
        }
    } else if !edited
        .missed_functions
        .is_subset(&non_generic(&ws, &rekeyed))
    {
        problems.push("the edit missed a function the oracle says is unchanged");
    }
    add(&mut total, &edited);

    // Undo the edit, then make it again: every key was stored before (and
    // gc evicts no entry), so both builds hit everything they look up; their
    // roots are written again, over ones whose refs had moved on.
    for phase in ["undoing the edit", "redoing the edit"] {
        ws.packages[member.package].functions[member.function].body_seed ^= 1;
        let again = build_until_published(&mut builder, &ws, role, &mut conflicts)?;
        if again.misses() != 0 {
            problems.push(if phase == "undoing the edit" {
                "undoing the edit missed a key stored before"
            } else {
                "redoing the edit missed a key stored before"
            });
        }
        add(&mut total, &again);
    }

    // Whatever is published now must be this model's build: the other
    // builder of a shared namespace builds the same model, so after both
    // are done racing a build finds every package's metadata as computed.
    let last = build_until_published(&mut builder, &ws, role, &mut conflicts)?;
    if role.exclusive() && (last.skipped != packages || last.lookups() != 0) {
        problems.push("the no-op rebuild did not skip every package");
    }
    if last.metadata != edited.metadata {
        problems.push("a published package's metadata differs from the computed one");
    }
    add(&mut total, &last);
    if total.wrong_hits > 0 {
        problems.push("a hit returned bytes other than what compiling gives");
    }
    let status = if problems.is_empty() {
        "ok"
    } else {
        "MISMATCH"
    };
    let tier = |t: &TierOutcome| format!("{}/{}/{}", t.lookups, t.hits, t.misses);
    Ok(format!(
        "{status} built={} skipped={} parse={} function={} instance={} comptime={} puts={} \
         bytes={} conflicts={conflicts} wrong={} {}",
        total.built,
        total.skipped,
        tier(&total.parse),
        tier(&total.function),
        tier(&total.instance),
        tier(&total.comptime),
        total.puts,
        total.bytes_written,
        total.wrong_hits,
        problems.join("; ")
    )
    .trim_end()
    .to_string())
}

fn add(total: &mut BuildOutcome, one: &BuildOutcome) {
    for (t, o) in [
        (&mut total.parse, &one.parse),
        (&mut total.function, &one.function),
        (&mut total.instance, &one.instance),
        (&mut total.comptime, &one.comptime),
    ] {
        t.lookups += o.lookups;
        t.hits += o.hits;
        t.misses += o.misses;
    }
    total.puts += one.puts;
    total.bytes_written += one.bytes_written;
    total.wrong_hits += one.wrong_hits;
    total.built += one.built;
    total.skipped += one.skipped;
}

/// The value of field `name` (`name=value`) of a builder's line.
fn field<'l>(line: &'l str, name: &str) -> &'l str {
    line.split(' ')
        .filter_map(|f| f.split_once('='))
        .find(|(k, _)| *k == name)
        .map_or("", |(_, v)| v)
}

/// Adds a builder's line to `total`; whether the builder said `ok`.
fn add_line(total: &mut BuildOutcome, line: &str) -> bool {
    let number = |text: &str| text.parse::<u64>().unwrap_or(0);
    for (name, tier) in [
        ("parse", &mut total.parse),
        ("function", &mut total.function),
        ("instance", &mut total.instance),
        ("comptime", &mut total.comptime),
    ] {
        let mut counts = field(line, name).split('/').map(number);
        tier.lookups += counts.next().unwrap_or(0);
        tier.hits += counts.next().unwrap_or(0);
        tier.misses += counts.next().unwrap_or(0);
    }
    total.puts += number(field(line, "puts"));
    total.bytes_written += number(field(line, "bytes"));
    total.wrong_hits += number(field(line, "wrong"));
    total.built += number(field(line, "built")) as usize;
    total.skipped += number(field(line, "skipped")) as usize;
    line.split(' ').next() == Some("ok")
}

/// What the gc loop did.
#[derive(Debug, Default)]
struct GcLoop {
    runs: u64,
    removed: u64,
}

/// Runs gc on the store at `root`, through its own handle, until `stop`
/// (at least once), with the scenario's aggressive policy.
fn gc_loop(root: &Path, options: StoreOptions, stop: &AtomicBool) -> Result<GcLoop> {
    let store = Store::open(root, options)?;
    let index = Index::open(&store)?;
    let policy = GcPolicy {
        objects: GcOptions {
            // The shortest grace the lock protocol allows while builds
            // run: a put that finds an object already there freshens it
            // only once a minute, so a shorter grace could remove an object
            // between a put that found it and the pin that follows.
            grace: FRESHEN_ON_PUT + Duration::from_secs(1),
            ..GcOptions::default()
        },
        reflog_keep: Duration::ZERO,
        ..GcPolicy::default()
    };
    let mut done = GcLoop::default();
    loop {
        let report = gc::collect(&store, &index, policy, &|_| {})?;
        done.runs += 1;
        done.removed += report.objects.removed_objects;
        if stop.load(Ordering::Acquire) {
            store.flush()?;
            return Ok(done);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs the scenario on `store`, starting each builder with `launch`.
///
/// # Errors
/// Store, index, gc and verify errors, and a builder that could not be
/// started or did not answer.
pub fn run(
    store: &Store,
    options: SimulateOptions,
    launch: BuilderLauncher<'_>,
) -> Result<ScenarioResult> {
    let started = Instant::now();
    let mut waits = Vec::new();
    for role in BuilderRole::ALL {
        waits.push((role, launch(store, role, options)?));
    }
    let stop = AtomicBool::new(false);
    let (root, store_options) = (store.root().to_path_buf(), store.options());
    let (lines, gc) = std::thread::scope(|scope| {
        let gc = scope.spawn(|| gc_loop(&root, store_options, &stop));
        let lines: Vec<(BuilderRole, Result<String>)> = waits
            .into_iter()
            .map(|(role, wait)| (role, wait()))
            .collect();
        stop.store(true, Ordering::Release);
        let gc = gc.join().unwrap_or_else(|_| {
            Err(Error::InvalidRequest {
                reason: "the gc thread of the concurrency scenario panicked".into(),
            })
        });
        (lines, gc)
    });
    let gc = gc?;
    let report = verify::verify(store, VerifyOptions::default(), &|_| {})?;
    let mut outcome = BuildOutcome::default();
    let mut all_ok = report.is_clean();
    let mut parts = Vec::new();
    for (role, line) in lines {
        let line = line?;
        all_ok &= add_line(&mut outcome, &line);
        parts.push(format!("{}: {line}", role.name()));
    }
    outcome.wall = started.elapsed();
    let problems = report
        .problems
        .iter()
        .filter(|p| !p.kind.is_litter())
        .count();
    let measured = format!(
        "{}; gc ran {} times, removed {} objects; verify: {}",
        parts.join("; "),
        gc.runs,
        gc.removed,
        if report.is_clean() {
            "clean".to_string()
        } else {
            format!("{problems} problems")
        }
    );
    Ok(ScenarioResult {
        name: "3 builder processes + gc on one store",
        outcome,
        expected: format!(
            "a build, a test run and an editor's checker ({} packages each: cold, recursive-group \
             edit, undo, redo, no-op) all correct while gc runs; verify clean",
            workspace(options).packages.len()
        ),
        measured,
        ok: all_ok,
    })
}
