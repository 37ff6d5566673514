//! rask-bench: puts rask-store and the stores a compiler author would pick
//! instead through one generated workload (W1) and prints one table.
//!
//! ```text
//! scripts/bench.sh                      # N = 100,000 (~1.5 GiB), every peer
//! scripts/bench.sh --n 5000 --peers rask,rawfs
//! ```
//!
//! Each peer runs in a fresh directory under one temp dir, removed at the end.

mod gcbench;
mod indexbench;
mod peer;
mod peers;
mod report;
mod rng;
mod synth;
mod workload;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::peer::{Peer, Res, disk_usage};
use crate::peers::{PeerSpec, store_dir};
use crate::report::{Rate, Row, Run};
use crate::workload::Workload;

/// Puts per transaction (redb, SQLite), and the unit every phase is driven in.
const BATCH: usize = 1_000;
/// Shuffle salts: one order per phase, all drawn from the seed.
const SALT_GET: u64 = 1;
const SALT_FRESH_GET: u64 = 2;
const SALT_EXISTS: u64 = 3;

#[derive(Parser)]
#[command(
    name = "rask-bench",
    about = "Benchmark rask-store against git, cacache, redb, SQLite and the raw filesystem"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the benchmark (the default).
    Run(RunArgs),
    /// Internal: read every value of a peer's store in a fresh process.
    #[command(hide = true)]
    ReadChild(ChildArgs),
    /// Internal: open a store and answer one lookup in a fresh process.
    #[command(hide = true)]
    IndexChild(indexbench::IndexChildArgs),
}

/// What to benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Workload W1 through every peer: put, get, fresh get, exists, verify,
    /// delete half + reclaim, disk (issue 7).
    W1,
    /// verify and gc of a store of N objects against a one-thread read +
    /// BLAKE3, `git fsck --full` and `git gc --prune=now` (issue 4).
    Gc,
    /// The keyed index at N entries: insert rate, lookup p50/p99,
    /// find_missing of 20,000 keys, fresh-process open + lookup, against
    /// cacache (issue 3).
    Index,
}

#[derive(Args, Clone)]
pub struct RunArgs {
    /// What to benchmark.
    #[arg(long, value_enum, default_value_t = Mode::W1)]
    pub mode: Mode,
    /// Number of keyed values (w1), objects (gc) or entries (index).
    #[arg(long, default_value_t = 100_000)]
    pub n: usize,
    /// Seed of the workload.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Peers to run, comma-separated (rask = keyed index, rask-objects,
    /// rawfs, sqlite, redb, cacache, git). gc mode runs rask-store and, if
    /// listed, git; index mode rask-store and, if listed, cacache.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "rask,rask-objects,rawfs,sqlite,redb,cacache,git"
    )]
    pub peers: Vec<String>,
    /// Directory in which the temp dir holding the stores is made.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Seconds to wait before the first put (w1). ext4 without a journal
    /// skips every inode freed in the last 60 s (65 s while its inode table
    /// block is dirty) when it allocates one (`recently_deleted` in
    /// fs/ext4/ialloc.c), so creating files right after a mass deletion (a
    /// previous run removing its stores, a test suite) runs many times
    /// slower; the wait keeps that out of the first peer's puts. 0 skips it.
    #[arg(long, default_value_t = 65)]
    pub settle: u64,
}

#[derive(Args)]
struct ChildArgs {
    #[arg(long)]
    peer: String,
    #[arg(long)]
    dir: PathBuf,
    #[arg(long)]
    n: usize,
    #[arg(long)]
    seed: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Cmd::ReadChild(args)) => read_child(&args),
        Some(Cmd::IndexChild(args)) => indexbench::index_child(&args),
        Some(Cmd::Run(args)) => run_mode(&args),
        None => run_mode(&cli.run),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rask-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_mode(args: &RunArgs) -> Res<()> {
    match args.mode {
        Mode::W1 => run(args),
        Mode::Gc => gcbench::run_gc(args),
        Mode::Index => indexbench::run_index(args),
    }
}

/// The 1, 5 and 15 minute load averages, as `/proc/loadavg` gives them.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

fn run(args: &RunArgs) -> Res<()> {
    let load_start = loadavg();
    let specs = args
        .peers
        .iter()
        .map(|id| peers::find(id).ok_or_else(|| format!("unknown peer {id:?}")))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(twice) = specs
        .iter()
        .enumerate()
        .find(|(i, s)| specs[..*i].iter().any(|t| t.id == s.id))
    {
        return Err(format!("peer {:?} is listed twice in --peers", twice.1.id).into());
    }
    let parent = match &args.dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir(),
    };
    let temp = tempfile::Builder::new()
        .prefix("rask-bench-")
        .tempdir_in(&parent)?;
    eprintln!("generating W1: n={} seed={}", args.n, args.seed);
    let workload = Workload::generate(args.n, args.seed);
    let mut run = Run::new(&workload);
    run.rows.push(limit_blake3(&workload));
    run.rows.push(limit_memcpy(&workload));
    // Every peer's puts and reads first, every delete after: on a filesystem
    // where creating a file costs more next to recently deleted inodes
    // (ext4 without a journal), one peer's deletes must not slow the next
    // peer's puts.
    let mut rows = Vec::new();
    if args.settle > 0 {
        eprintln!(
            "waiting {} s for files deleted before this run to leave ext4's recently-deleted \
             window (--settle 0 skips this)",
            args.settle
        );
        std::thread::sleep(std::time::Duration::from_secs(args.settle));
    }
    let mut creates = Vec::new();
    for spec in &specs {
        let dir = temp.path().join(spec.id);
        std::fs::create_dir_all(&dir)?;
        let rate = create_rate(&temp.path().join(format!("probe-{}", spec.id)))?;
        eprintln!(
            "{}: {rate:.0} file creations/s just before the put",
            spec.id
        );
        creates.push(format!("{} {}/s", spec.id, report::group(rate)));
        let mut row = Row::new(spec.id, spec.label, spec.durability);
        if let Err(e) = run_peer(spec, &workload, &dir, args, &mut row, &mut run) {
            eprintln!("{}: {e}", spec.id);
            row.error = Some(e.to_string());
        }
        rows.push(row);
    }
    for (spec, row) in specs.iter().zip(&mut rows) {
        if row.error.is_none()
            && let Err(e) = delete_half(spec, &workload, &temp.path().join(spec.id), row)
        {
            eprintln!("{}: {e}", spec.id);
            row.error = Some(e.to_string());
        }
        run.notes.push(format!(
            "{}: verify = {}; delete = {}.",
            spec.label, spec.verify, spec.reclaim
        ));
    }
    run.rows.extend(rows);
    run.notes.push(format!(
        "File creations per second just before each peer's put ({PROBE_FILES} empty files, kept \
         until the end; the first put waited {} s after any earlier deletion): {}. A figure far \
         below the others means that peer's put ran while the filesystem was still skipping \
         recently deleted inodes.",
        args.settle,
        creates.join(", ")
    ));
    run.load = format!(
        "load average {load_start} at the start, {} at the end",
        loadavg()
    );
    // The table first: removing every store can take minutes on a
    // filesystem that discards freed blocks synchronously.
    println!("{}", run.render());
    eprintln!("removing the stores");
    temp.close()?;
    Ok(())
}

/// Empty files [`create_rate`] creates.
const PROBE_FILES: usize = 500;

/// Creates [`PROBE_FILES`] empty files in the new directory `dir` and
/// returns how many it created per second: how fast this filesystem makes
/// files right now. The files stay (deleting them would slow the next put).
fn create_rate(dir: &Path) -> Res<f64> {
    std::fs::create_dir_all(dir)?;
    let start = Instant::now();
    for i in 0..PROBE_FILES {
        std::fs::File::create_new(dir.join(format!("f{i}")))?;
    }
    Ok(PROBE_FILES as f64 / start.elapsed().as_secs_f64())
}

/// Runs one phase; returns its result, its seconds and the seconds this
/// thread spent runnable but waiting for a CPU (other load on the machine).
pub fn timed<T>(what: &str, id: &str, f: impl FnOnce() -> Res<T>) -> Res<(T, f64, f64)> {
    let wait_before = runqueue_wait_secs();
    let start = Instant::now();
    let out = f().map_err(|e| format!("{what}: {e}"))?;
    let secs = start.elapsed().as_secs_f64();
    let waited = runqueue_wait_secs() - wait_before;
    eprintln!("{id}: {what} {secs:.2} s (waited for a CPU {waited:.2} s)");
    Ok((out, secs, waited))
}

/// Seconds this thread has spent runnable but not running, from Linux's
/// schedstat; 0 where that is not available.
pub fn runqueue_wait_secs() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0.0, |ns| ns as f64 / 1e9)
}

fn run_peer(
    spec: &PeerSpec,
    w: &Workload,
    dir: &Path,
    args: &RunArgs,
    row: &mut Row,
    run: &mut Run,
) -> Res<()> {
    let n = w.len();
    let mut peer = (spec.create)(dir)?;

    let ((), secs, waited) = timed("put", spec.id, || put_all(peer.as_mut(), w))?;
    row.put = Some(Rate::new(n, w.value_bytes(), secs));
    row.account(secs, waited);

    let order = w.shuffled(SALT_GET);
    let ((), secs, waited) = timed("get", spec.id, || get_all(peer.as_mut(), w, &order))?;
    row.get = Some(Rate::new(n, w.value_bytes(), secs));
    row.account(secs, waited);

    timed("close", spec.id, || peer.close())?;
    let ((secs, waited), _, _) =
        timed("fresh-process get", spec.id, || fresh_get(spec, dir, args))?;
    row.get_fresh = Some(Rate::new(n, w.value_bytes(), secs));
    row.account(secs, waited);
    let mut peer = (spec.open)(dir)?;

    let (keys, expected) = existence_keys(w);
    let ((), secs, waited) = timed("exists", spec.id, || {
        exists_all(peer.as_mut(), &keys, &expected)
    })?;
    row.exists = Some(Rate::new(keys.len(), 0, secs));
    row.account(secs, waited);

    let (supported, secs, waited) = timed("verify", spec.id, || peer.verify())?;
    if supported {
        row.verify = Some(Rate::new(n, w.value_bytes(), secs));
        row.account(secs, waited);
    }
    // The single-thread read + hash reference, once, on rask-store's files.
    if spec.id.starts_with("rask") && !run.rows.iter().any(|r| r.id == "readhash") {
        let root = store_dir(dir);
        let (_, secs, waited) = timed("read+hash", spec.id, || peers::read_and_hash_tree(&root))?;
        let mut limit = Row::new(
            "readhash",
            "read + BLAKE3, one thread, rask-store's files (limit)",
            "-",
        );
        limit.verify = Some(Rate::new(n, w.value_bytes(), secs));
        limit.account(secs, waited);
        run.rows.push(limit);
    }

    row.disk = Some(disk_usage(&store_dir(dir))?);
    peer.close()?;
    Ok(())
}

/// Deletes every other key, reclaims the space, and checks the kept half survived.
fn delete_half(spec: &PeerSpec, w: &Workload, dir: &Path, row: &mut Row) -> Res<()> {
    let mut peer = (spec.open)(dir)?;
    let doomed: Vec<usize> = (0..w.len()).filter(|i| i % 2 == 1).collect();
    let kept: Vec<usize> = (0..w.len()).filter(|i| i % 2 == 0).collect();
    let ((), secs, waited) = timed("delete+reclaim", spec.id, || {
        for chunk in doomed.chunks(BATCH) {
            let keys: Vec<&[u8]> = chunk.iter().map(|&i| w.key(i)).collect();
            peer.delete_batch(&keys)?;
        }
        peer.reclaim()
    })?;
    row.delete = Some(Rate::new(doomed.len(), w.bytes_of(&doomed), secs));
    row.account(secs, waited);
    row.disk_after = Some(disk_usage(&store_dir(dir))?);
    row.kept_bytes = w.bytes_of(&kept);
    let sample: Vec<usize> = kept.iter().copied().take(BATCH).collect();
    get_all(peer.as_mut(), w, &sample).map_err(|e| format!("after delete: {e}"))?;
    peer.close()?;
    Ok(())
}

fn put_all(peer: &mut dyn Peer, w: &Workload) -> Res<()> {
    let indices: Vec<usize> = (0..w.len()).collect();
    let mut batch = Vec::with_capacity(BATCH);
    for chunk in indices.chunks(BATCH) {
        batch.clear();
        batch.extend(chunk.iter().map(|&i| (w.key(i), w.value(i))));
        peer.put_batch(&batch)?;
    }
    Ok(())
}

/// Gets every value of `order`, checking every byte.
fn get_all(peer: &mut dyn Peer, w: &Workload, order: &[usize]) -> Res<()> {
    for chunk in order.chunks(BATCH) {
        let keys: Vec<&[u8]> = chunk.iter().map(|&i| w.key(i)).collect();
        let mut seen = 0;
        peer.get_batch(&keys, &mut |at, bytes| {
            let i = *chunk
                .get(at)
                .ok_or("peer answered an index it was not asked")?;
            if bytes != w.value(i) {
                return Err(format!("value {i} read back wrong ({} bytes)", bytes.len()).into());
            }
            seen += 1;
            Ok(())
        })?;
        if seen != chunk.len() {
            return Err(format!("{seen} of {} values came back", chunk.len()).into());
        }
    }
    Ok(())
}

/// N keys, half stored (drawn at random), half never stored, shuffled together.
fn existence_keys(w: &Workload) -> (Vec<&[u8]>, Vec<bool>) {
    let half = w.len() / 2;
    let mut pairs: Vec<(&[u8], bool)> = w
        .shuffled(SALT_EXISTS)
        .into_iter()
        .take(w.len() - half)
        .map(|i| (w.key(i), true))
        .chain(w.absent_keys().iter().take(half).map(|k| (&k[..], false)))
        .collect();
    rng::Rng::new(w.seed, 200 + SALT_EXISTS).shuffle(&mut pairs);
    pairs.into_iter().unzip()
}

fn exists_all(peer: &mut dyn Peer, keys: &[&[u8]], expected: &[bool]) -> Res<()> {
    let mut found = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(BATCH) {
        peer.exists_batch(chunk, &mut found)?;
    }
    if found != expected {
        let wrong = found.iter().zip(expected).filter(|(a, b)| a != b).count();
        return Err(format!("{wrong} existence answers were wrong").into());
    }
    Ok(())
}

/// Runs the read phase in a new process (warm page cache, cold process);
/// returns the seconds the child measured from opening the store to the last
/// byte checked, and the seconds of those it waited for a CPU.
fn fresh_get(spec: &PeerSpec, dir: &Path, args: &RunArgs) -> Res<(f64, f64)> {
    let mut child = Command::new(std::env::current_exe()?);
    child
        .arg("read-child")
        .args(["--peer", spec.id])
        .arg("--dir")
        .arg(dir)
        .args(["--n", &args.n.to_string(), "--seed", &args.seed.to_string()]);
    let stdout = run_child(&mut child, "read-child")?;
    let field = |name| child_field(&stdout, name, "read-child");
    Ok((field("secs=")?, field("waited=")?))
}

/// Runs the harness re-running itself as `what` and returns what it printed.
pub fn run_child(child: &mut Command, what: &str) -> Res<String> {
    let out = child.output()?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The number a child printed as `name<value>` (for example `secs=1.5`).
pub fn child_field(stdout: &str, name: &str, what: &str) -> Res<f64> {
    let value = stdout
        .split_whitespace()
        .find_map(|f| f.strip_prefix(name))
        .ok_or_else(|| format!("{what} printed {stdout:?}"))?;
    Ok(value.parse()?)
}

fn read_child(args: &ChildArgs) -> Res<()> {
    let spec = peers::find(&args.peer).ok_or("unknown peer")?;
    let w = Workload::generate(args.n, args.seed);
    let order = w.shuffled(SALT_FRESH_GET);
    let wait_before = runqueue_wait_secs();
    let start = Instant::now();
    let mut peer = (spec.open)(&args.dir)?;
    get_all(peer.as_mut(), &w, &order)?;
    let secs = start.elapsed().as_secs_f64();
    let waited = runqueue_wait_secs() - wait_before;
    drop(peer);
    println!("secs={secs} waited={waited}");
    Ok(())
}

fn limit_blake3(w: &Workload) -> Row {
    let wait_before = runqueue_wait_secs();
    let start = Instant::now();
    for i in 0..w.len() {
        std::hint::black_box(blake3::hash(std::hint::black_box(w.value(i))));
    }
    let secs = start.elapsed().as_secs_f64();
    let waited = runqueue_wait_secs() - wait_before;
    let mut row = Row::new("blake3", "BLAKE3 of every value, one thread (limit)", "-");
    row.account(secs, waited);
    row.put = Some(Rate::new(w.len(), w.value_bytes(), secs));
    row.get = row.put;
    row
}

fn limit_memcpy(w: &Workload) -> Row {
    let mut buf = vec![0u8; 256 << 10];
    let wait_before = runqueue_wait_secs();
    let start = Instant::now();
    for i in 0..w.len() {
        let value = std::hint::black_box(w.value(i));
        buf[..value.len()].copy_from_slice(value);
        std::hint::black_box(&mut buf);
    }
    let secs = start.elapsed().as_secs_f64();
    let waited = runqueue_wait_secs() - wait_before;
    let mut row = Row::new("memcpy", "memcpy of every value (limit)", "-");
    row.account(secs, waited);
    row.put = Some(Rate::new(w.len(), w.value_bytes(), secs));
    row.get = row.put;
    row
}
