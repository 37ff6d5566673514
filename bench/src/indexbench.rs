//! `--mode index`: issue 3's benchmark. N keyed entries, one small part
//! each ("small results" sizes, see [`crate::synth`]), in rask-store and,
//! in the same run, in cacache (keyed `write_sync` / `metadata_sync` /
//! `read_sync`). Timed:
//!
//! - insert: `Index::put` of every entry (one object file + one journal
//!   append each) / `cacache::write_sync`;
//! - lookup latency in-process, each call timed on its own with `Instant`:
//!   hits (`Index::lookup` / `metadata_sync`), misses, and gets
//!   (`Index::get`: lookup + hash-verified part read / `read_sync`);
//! - `find_missing` over 20,000 keys, half absent (cacache: 20,000
//!   `metadata_sync`), five times;
//! - a fresh process (the harness re-running itself, `index-child`) that
//!   opens the store and answers one lookup, timed inside the child with
//!   `Instant` from before the open to the answer, seven times.
//!
//! rask-store is measured twice: as the inserts left the index (segments
//! from automatic compactions plus a journal) and after `Index::compact`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use clap::Args;
use rask_store::{Durability, Index, Lookup, Namespace, Store, StoreOptions};

use crate::gcbench::group;
use crate::peer::{Res, disk_usage};
use crate::rng::Rng;
use crate::synth::{self, Sizes, percentile};
use crate::{RunArgs, loadavg, timed};

const NAMESPACE: &str = "rask-bench-index";
const PART: &str = "memo";
const MIB: f64 = 1024.0 * 1024.0;
/// Keys per `find_missing` call (issue 3).
const FIND_MISSING_KEYS: u64 = 20_000;
/// Hits timed one by one.
const LOOKUP_SAMPLE: u64 = 100_000;
/// Misses and gets timed one by one.
const SMALL_SAMPLE: u64 = 20_000;
const FRESH_RUNS: usize = 7;
const FIND_MISSING_RUNS: usize = 5;

#[derive(Args)]
pub struct IndexChildArgs {
    /// rask or cacache.
    #[arg(long)]
    store: String,
    #[arg(long)]
    dir: PathBuf,
    #[arg(long)]
    seed: u64,
    /// The entry to look up.
    #[arg(long)]
    i: u64,
}

/// Latencies of one kind of call, in nanoseconds.
#[derive(Default)]
struct Latency {
    p50: u64,
    p99: u64,
    mean: f64,
}

impl Latency {
    fn of(mut ns: Vec<u64>) -> Latency {
        ns.sort_unstable();
        Latency {
            p50: percentile(&ns, 50.0),
            p99: percentile(&ns, 99.0),
            mean: ns.iter().sum::<u64>() as f64 / ns.len().max(1) as f64,
        }
    }

    fn cell(&self) -> String {
        format!(
            "{} / {} (mean {})",
            micros(self.p50),
            micros(self.p99),
            micros(self.mean as u64)
        )
    }
}

fn micros(ns: u64) -> String {
    if ns < 10_000 {
        format!("{:.2} µs", ns as f64 / 1e3)
    } else {
        format!("{:.0} µs", ns as f64 / 1e3)
    }
}

fn millis(secs: f64) -> String {
    format!("{:.2} ms", secs * 1e3)
}

/// What one store measured.
#[derive(Default)]
struct Figures {
    label: String,
    insert: Option<(f64, f64)>,
    hit: Latency,
    miss: Latency,
    get: Latency,
    /// Seconds of each `find_missing` run.
    find_missing: Vec<f64>,
    /// Child-measured seconds: open + lookup, open + lookup + read.
    fresh_lookup: Vec<f64>,
    fresh_get: Vec<f64>,
    /// Parent-measured seconds, spawn to exit.
    fresh_wall: Vec<f64>,
    disk: (u64, u64),
}

/// "best / median" of timings in seconds, as milliseconds.
fn best_and_median(v: &[f64]) -> String {
    format!("{} / {}", millis(min(v)), millis(median(v)))
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

/// Distinct entries to sample, drawn from the seed.
fn sample(seed: u64, salt: u64, n: u64, count: u64) -> Vec<u64> {
    let mut rng = Rng::new(seed, 300 + salt);
    (0..count.min(n)).map(|_| rng.below(n)).collect()
}

pub fn run_index(args: &RunArgs) -> Res<()> {
    let with_cacache = args.peers.iter().any(|p| p == "cacache");
    let load_start = loadavg();
    let parent = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let temp = tempfile::Builder::new()
        .prefix("rask-bench-index-")
        .tempdir_in(&parent)?;
    let n = args.n as u64;
    let seed = args.seed;
    let value_bytes: u64 = (0..n)
        .map(|i| synth::size(seed, i, Sizes::Small) as u64)
        .sum();
    eprintln!("index mode: n={n} seed={seed}");
    let mut columns = Vec::new();

    let root = temp.path().join("rask");
    {
        let store = Store::create(&root, StoreOptions::with_durability(Durability::None))?;
        let index = Index::open(&store)?;
        let ns = Namespace::new(NAMESPACE)?;
        let ((), secs, waited) = timed("insert (Index::put)", "rask", || {
            synth::populate(&store, &index, &ns, (seed, n), Sizes::Small, PART)
        })?;
        let stats = index.stats()?;
        let mut inserted = measure_rask(&store, &index, &ns, seed, n, &root)?;
        inserted.insert = Some((secs, waited));
        inserted.label = format!(
            "rask-store, as inserted ({} segment{} + a {:.1} MiB journal)",
            stats.segments.len(),
            if stats.segments.len() == 1 { "" } else { "s" },
            stats.journal_bytes as f64 / MIB
        );
        drop(index);
        let index = Index::open(&store)?;
        timed("compact", "rask", || Ok(index.compact()?))?;
        let mut compacted = measure_rask(&store, &index, &ns, seed, n, &root)?;
        compacted.label = "rask-store, after `Index::compact` (1 segment)".into();
        columns.push(inserted);
        columns.push(compacted);
    }

    if with_cacache {
        let dir = temp.path().join("cacache");
        std::fs::create_dir_all(&dir)?;
        let ((), secs, waited) = timed("insert (write_sync)", "cacache", || {
            let mut buf = Vec::new();
            for i in 0..n {
                synth::value(seed, i, Sizes::Small, &mut buf);
                cacache::write_sync(&dir, synth::key_string(seed, i), &buf)?;
            }
            Ok(())
        })?;
        let mut c = measure_cacache(&dir, seed, n)?;
        c.insert = Some((secs, waited));
        c.label = "cacache (sync API)".into();
        columns.push(c);
    }
    println!(
        "{}",
        render(&columns, n, seed, value_bytes, &load_start, &loadavg())
    );
    eprintln!("removing the stores");
    temp.close()?;
    Ok(())
}

fn measure_rask(
    store: &Store,
    index: &Index,
    ns: &Namespace,
    seed: u64,
    n: u64,
    root: &Path,
) -> Res<Figures> {
    let mut f = Figures::default();
    let keys = sample(seed, 1, n, LOOKUP_SAMPLE)
        .into_iter()
        .map(|i| synth::key(ns, seed, i))
        .collect::<Res<Vec<_>>>()?;
    let ((), _, _) = timed("lookup (hits, one by one)", "rask", || {
        let mut ns_each = Vec::with_capacity(keys.len());
        for key in &keys {
            let start = Instant::now();
            let found = index.lookup(key)?;
            ns_each.push(start.elapsed().as_nanos() as u64);
            if !found.is_hit() {
                return Err(format!("{key} missed").into());
            }
        }
        f.hit = Latency::of(ns_each);
        Ok(())
    })?;
    let absent = (n..n + SMALL_SAMPLE)
        .map(|i| synth::key(ns, seed, i))
        .collect::<Res<Vec<_>>>()?;
    let ((), _, _) = timed("lookup (misses, one by one)", "rask", || {
        let mut ns_each = Vec::with_capacity(absent.len());
        for key in &absent {
            let start = Instant::now();
            let found = index.lookup(key)?;
            ns_each.push(start.elapsed().as_nanos() as u64);
            if found.is_hit() {
                return Err(format!("{key} was never stored but hit").into());
            }
        }
        f.miss = Latency::of(ns_each);
        Ok(())
    })?;
    let ((), _, _) = timed("get (lookup + verified read)", "rask", || {
        let mut ns_each = Vec::with_capacity(SMALL_SAMPLE as usize);
        let mut want = Vec::new();
        for (key, i) in keys
            .iter()
            .zip(sample(seed, 1, n, LOOKUP_SAMPLE))
            .take(SMALL_SAMPLE as usize)
        {
            let start = Instant::now();
            let found = index.get(store, key, PART)?;
            ns_each.push(start.elapsed().as_nanos() as u64);
            synth::value(seed, i, Sizes::Small, &mut want);
            match found {
                Lookup::Hit(bytes) if bytes == want => {}
                _ => return Err(format!("{key} did not read back its value").into()),
            }
        }
        f.get = Latency::of(ns_each);
        Ok(())
    })?;
    // find_missing: 10,000 stored keys and 10,000 absent ones, shuffled.
    let half = FIND_MISSING_KEYS / 2;
    let mut batch: Vec<_> = sample(seed, 2, n, half)
        .into_iter()
        .chain(n + SMALL_SAMPLE..n + SMALL_SAMPLE + half)
        .map(|i| synth::key(ns, seed, i))
        .collect::<Res<Vec<_>>>()?;
    Rng::new(seed, 400).shuffle(&mut batch);
    for run in 0..FIND_MISSING_RUNS {
        let (missing, secs, _) = timed(&format!("find_missing run {}", run + 1), "rask", || {
            Ok(index.find_missing(&batch)?)
        })?;
        if missing.len() as u64 != half {
            return Err(format!("find_missing found {} missing of {half}", missing.len()).into());
        }
        f.find_missing.push(secs);
    }
    fresh(&mut f, "rask", root, seed, n)?;
    f.disk = disk_usage(root)?;
    Ok(f)
}

fn measure_cacache(dir: &Path, seed: u64, n: u64) -> Res<Figures> {
    let mut f = Figures::default();
    let keys: Vec<String> = sample(seed, 1, n, LOOKUP_SAMPLE)
        .into_iter()
        .map(|i| synth::key_string(seed, i))
        .collect();
    let ((), _, _) = timed("lookup (metadata_sync hits)", "cacache", || {
        let mut ns_each = Vec::with_capacity(keys.len());
        for key in &keys {
            let start = Instant::now();
            let found = cacache::metadata_sync(dir, key)?;
            ns_each.push(start.elapsed().as_nanos() as u64);
            if found.is_none() {
                return Err(format!("{key} missed").into());
            }
        }
        f.hit = Latency::of(ns_each);
        Ok(())
    })?;
    let ((), _, _) = timed("lookup (metadata_sync misses)", "cacache", || {
        let mut ns_each = Vec::with_capacity(SMALL_SAMPLE as usize);
        for i in n..n + SMALL_SAMPLE {
            let key = synth::key_string(seed, i);
            let start = Instant::now();
            let found = cacache::metadata_sync(dir, &key)?;
            ns_each.push(start.elapsed().as_nanos() as u64);
            if found.is_some() {
                return Err(format!("{key} was never stored but hit").into());
            }
        }
        f.miss = Latency::of(ns_each);
        Ok(())
    })?;
    let ((), _, _) = timed("get (read_sync)", "cacache", || {
        let mut ns_each = Vec::with_capacity(SMALL_SAMPLE as usize);
        let mut want = Vec::new();
        for (key, i) in keys
            .iter()
            .zip(sample(seed, 1, n, LOOKUP_SAMPLE))
            .take(SMALL_SAMPLE as usize)
        {
            let start = Instant::now();
            let bytes = cacache::read_sync(dir, key)?;
            ns_each.push(start.elapsed().as_nanos() as u64);
            synth::value(seed, i, Sizes::Small, &mut want);
            if bytes != want {
                return Err(format!("{key} did not read back its value").into());
            }
        }
        f.get = Latency::of(ns_each);
        Ok(())
    })?;
    let half = FIND_MISSING_KEYS / 2;
    let mut batch: Vec<String> = sample(seed, 2, n, half)
        .into_iter()
        .chain(n + SMALL_SAMPLE..n + SMALL_SAMPLE + half)
        .map(|i| synth::key_string(seed, i))
        .collect();
    Rng::new(seed, 400).shuffle(&mut batch);
    for run in 0..FIND_MISSING_RUNS {
        let (missing, secs, _) = timed(
            &format!("20,000 metadata_sync run {}", run + 1),
            "cacache",
            || {
                let mut missing = 0u64;
                for key in &batch {
                    missing += u64::from(cacache::metadata_sync(dir, key)?.is_none());
                }
                Ok(missing)
            },
        )?;
        if missing != half {
            return Err(format!("cacache found {missing} missing of {half}").into());
        }
        f.find_missing.push(secs);
    }
    fresh(&mut f, "cacache", dir, seed, n)?;
    f.disk = disk_usage(dir)?;
    Ok(f)
}

/// Runs `index-child` [`FRESH_RUNS`] times, each for another entry.
fn fresh(f: &mut Figures, which: &str, dir: &Path, seed: u64, n: u64) -> Res<()> {
    for i in sample(seed, 3, n, FRESH_RUNS as u64) {
        let start = Instant::now();
        let mut child = Command::new(std::env::current_exe()?);
        child
            .arg("index-child")
            .args(["--store", which])
            .arg("--dir")
            .arg(dir)
            .args(["--seed", &seed.to_string(), "--i", &i.to_string()]);
        let stdout = crate::run_child(&mut child, "index-child")?;
        let wall = start.elapsed().as_secs_f64();
        let field = |name| crate::child_field(&stdout, name, "index-child");
        f.fresh_lookup.push(field("lookup=")?);
        f.fresh_get.push(field("get=")?);
        f.fresh_wall.push(wall);
    }
    eprintln!(
        "{which}: fresh process open + lookup, median {} (wall {})",
        millis(median(&f.fresh_lookup)),
        millis(median(&f.fresh_wall))
    );
    Ok(())
}

/// In a fresh process: opens the store and answers one lookup, then reads
/// the part; prints the seconds from before the open to each answer.
pub fn index_child(args: &IndexChildArgs) -> Res<()> {
    let mut want = Vec::new();
    synth::value(args.seed, args.i, Sizes::Small, &mut want);
    let (lookup, get) = match args.store.as_str() {
        "rask" => {
            let start = Instant::now();
            let store = Store::open(&args.dir, StoreOptions::with_durability(Durability::None))?;
            let index = Index::open(&store)?;
            let key = synth::key(&Namespace::new(NAMESPACE)?, args.seed, args.i)?;
            let entry = index.lookup(&key)?;
            let lookup = start.elapsed().as_secs_f64();
            let bytes = index.get(&store, &key, PART)?;
            let get = start.elapsed().as_secs_f64();
            if !entry.is_hit() || bytes.hit().as_deref() != Some(&want[..]) {
                return Err(format!("entry {} did not read back", args.i).into());
            }
            (lookup, get)
        }
        "cacache" => {
            let start = Instant::now();
            let key = synth::key_string(args.seed, args.i);
            let found = cacache::metadata_sync(&args.dir, &key)?;
            let lookup = start.elapsed().as_secs_f64();
            let bytes = cacache::read_sync(&args.dir, &key)?;
            let get = start.elapsed().as_secs_f64();
            if found.is_none() || bytes != want {
                return Err(format!("entry {} did not read back", args.i).into());
            }
            (lookup, get)
        }
        other => return Err(format!("unknown store {other:?}").into()),
    };
    println!("lookup={lookup} get={get}");
    Ok(())
}

fn render(
    columns: &[Figures],
    n: u64,
    seed: u64,
    value_bytes: u64,
    load_start: &str,
    load_end: &str,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "index: {} entries (one part each, 32–512 B, {:.0} MiB in all), seed {seed}; load \
         average {load_start} at the start, {load_end} at the end\n",
        group(n),
        value_bytes as f64 / MIB
    );
    out.push_str("| measure |");
    for c in columns {
        let _ = write!(out, " {} |", c.label);
    }
    out.push_str(" target (rask-store) | verdict (as inserted · compacted) |\n|---|");
    out.push_str(&"---|".repeat(columns.len() + 2));
    out.push('\n');
    let rask: Vec<&Figures> = columns.iter().take(2).collect();
    let verdict = |ok: &dyn Fn(&Figures) -> bool| {
        rask.iter()
            .map(|f| if ok(f) { "met" } else { "MISSED" })
            .collect::<Vec<_>>()
            .join(" · ")
    };
    let mut row = |name: &str, cell: &dyn Fn(&Figures) -> String, target: &str, v: String| {
        let _ = write!(out, "| {name} |");
        for c in columns {
            let _ = write!(out, " {} |", cell(c));
        }
        let _ = writeln!(out, " {target} | {v} |");
    };
    row(
        "insert (one object + one entry each)",
        &|f| match f.insert {
            Some((secs, waited)) => format!(
                "{}/s · {:.1} s (waited {:.1} s)",
                group((n as f64 / secs.max(1e-9)) as u64),
                secs,
                waited
            ),
            None => "–".into(),
        },
        "–",
        "–".into(),
    );
    row(
        "lookup, hit: p50 / p99",
        &|f| f.hit.cell(),
        "p50 < 1 µs",
        verdict(&|f| f.hit.p50 < 1_000),
    );
    row(
        "lookup, miss: p50 / p99",
        &|f| f.miss.cell(),
        "–",
        "–".into(),
    );
    row(
        "get (lookup + hash-verified read of the part): p50 / p99",
        &|f| f.get.cell(),
        "–",
        "–".into(),
    );
    row(
        "find_missing, 20,000 keys (½ absent): best / median of 5",
        &|f| best_and_median(&f.find_missing),
        "< 10 ms",
        verdict(&|f| median(&f.find_missing) < 0.010),
    );
    row(
        "fresh process: open + one lookup, in the child: best / median of 7",
        &|f| best_and_median(&f.fresh_lookup),
        "< 5 ms",
        verdict(&|f| median(&f.fresh_lookup) < 0.005),
    );
    row(
        "fresh process: open + lookup + verified read",
        &|f| best_and_median(&f.fresh_get),
        "–",
        "–".into(),
    );
    row(
        "fresh process: spawn to exit, from the parent",
        &|f| best_and_median(&f.fresh_wall),
        "–",
        "–".into(),
    );
    row(
        "disk (files)",
        &|f| format!("{:.0} MiB ({})", f.disk.0 as f64 / MIB, group(f.disk.1)),
        "–",
        "–".into(),
    );
    out.push_str(
        "\nEach lookup is timed on its own with `Instant` (its ~20–40 ns are included). \
         Hits: min(N, 100,000) stored keys drawn at random (with repeats); \
         misses: 20,000 never-stored keys; gets: the first 20,000 of the hits. A miss reads the \
         journal's tail once (entries other processes appended), a system call a hit skips. cacache's lookup is `metadata_sync` (reads and parses the key's \
         index bucket), its get `read_sync`, its find_missing 20,000 `metadata_sync` calls. \
         The fresh-process child is the harness re-running itself; \"in the child\" runs from \
         before opening the store to the answer (page cache warm, process cold); \
         \"spawn to exit\" adds process start-up and exit.\n",
    );
    out
}
