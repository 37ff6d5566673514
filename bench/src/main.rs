//! rask-bench: puts rask-store and the stores a compiler author would pick
//! instead through one generated workload (W1) and prints one table.
//!
//! ```text
//! scripts/bench.sh                      # N = 100,000 (~1.5 GiB), every peer
//! scripts/bench.sh --n 5000 --peers rask,rawfs
//! ```
//!
//! Each peer runs in a fresh directory under one temp dir, removed at the end.

mod batchbench;
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
    /// `Store::get_many` and `Store::put_many` against one call per object,
    /// at batch sizes from 4 to 1,000, for W1's values and values fifty
    /// times smaller: where sharing a batch over the cores starts to pay.
    Batch,
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
    /// rawfs, rawpack, rask-pack, sqlite, redb, cacache, git). gc mode runs rask-store and, if
    /// listed, git; index mode rask-store and, if listed, cacache.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "rask,rask-objects,rawfs,rawpack,rask-pack,sqlite,redb,cacache,git"
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
    /// slower. The puts are interleaved, so this slows every peer alike;
    /// waiting (65 s) keeps it out of the absolute figures.
    #[arg(long, default_value_t = 0)]
    pub settle: u64,
    /// What the interleaved puts (w1) do about the kernel's writeback.
    #[arg(long, value_enum, default_value_t = Writeback::Wait)]
    pub writeback: Writeback,
}

/// What happens to the dirty pages the peers' puts leave, between rounds of
/// the interleaved put (w1).
///
/// Every peer writes without fsync, so its puts leave dirty pages for the
/// kernel to write back. Nine peers leave ~14 GiB. Once the machine's dirty
/// pages pass the midpoint of `vm.dirty_background_ratio` and
/// `vm.dirty_ratio`, the kernel holds every task that dirties pages to a
/// share of the disk's write bandwidth (`balance_dirty_pages`), whichever
/// peer made them: a put then measures the disk and the other peers' debt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Writeback {
    /// After each round (one batch of every peer), wait for the filesystem's
    /// dirty pages to reach the disk (`sync -f`), untimed. Each batch meets
    /// a machine with at most one round's dirty pages, as a build meets it.
    Wait,
    /// Never wait: the peers' dirty pages pile up, and once past the
    /// kernel's threshold every put runs at the disk's pace (runs before
    /// 2026-12-02 08:00).
    Pile,
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
        Mode::Batch => batchbench::run_batch(args),
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
    if args.settle > 0 {
        eprintln!(
            "waiting {} s for files deleted before this run to leave ext4's recently-deleted \
             window",
            args.settle
        );
        std::thread::sleep(std::time::Duration::from_secs(args.settle));
    }
    let mut rows: Vec<Row> = specs
        .iter()
        .map(|spec| Row::new(spec.id, spec.label, spec.durability))
        .collect();
    let mut peers = put_interleaved(
        &specs,
        &workload,
        temp.path(),
        args.writeback,
        &mut rows,
        &mut run,
    )?;
    for ((spec, row), peer) in specs.iter().zip(&mut rows).zip(&mut peers) {
        let Some(peer) = peer.take() else { continue };
        let dir = temp.path().join(spec.id);
        if let Err(e) = run_peer(spec, peer, &workload, &dir, args, row, &mut run) {
            eprintln!("{}: {e}", spec.id);
            row.error = Some(e.to_string());
        }
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
    run.notes.push(
        "Puts are interleaved: batch i (1,000 values) of every peer runs before batch i + 1 of \
         any, the first peer of each round rotating, and each peer's put is the sum of its \
         batches' times, so every peer's put meets the same disk state (creating files on this \
         disk slows down for minutes after mass deletions and as it fills). Before its gets, \
         each peer's files are read once, untimed: all the stores together outgrow the page \
         cache."
            .into(),
    );
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

/// Creates every peer and puts the whole workload into each, one batch of
/// every peer after another (the first peer of each round rotating), timing
/// each peer's batches. Returns the open peers; a peer that failed has
/// `None` and its row the error.
fn put_interleaved(
    specs: &[&'static PeerSpec],
    w: &Workload,
    root: &Path,
    writeback: Writeback,
    rows: &mut [Row],
    run: &mut Run,
) -> Res<Vec<Option<Box<dyn Peer>>>> {
    let mut peers = Vec::with_capacity(specs.len());
    for (spec, row) in specs.iter().zip(rows.iter_mut()) {
        let dir = root.join(spec.id);
        std::fs::create_dir_all(&dir)?;
        match (spec.create)(&dir) {
            Ok(peer) => peers.push(Some(peer)),
            Err(e) => {
                eprintln!("{}: create: {e}", spec.id);
                row.error = Some(format!("create: {e}"));
                peers.push(None);
            }
        }
    }
    let mut secs = vec![0.0f64; specs.len()];
    let mut waited = vec![0.0f64; specs.len()];
    // Batches each peer began with the machine's dirty pages past the point
    // where the kernel starts holding writers back.
    let mut throttled = vec![0usize; specs.len()];
    let mut peak_dirty = 0u64;
    let mut flush_secs = 0.0f64;
    let indices: Vec<usize> = (0..w.len()).collect();
    let mut batch = Vec::with_capacity(BATCH);
    for (round, chunk) in indices.chunks(BATCH).enumerate() {
        batch.clear();
        batch.extend(chunk.iter().map(|&i| (w.key(i), w.value(i))));
        for k in 0..specs.len() {
            let p = (round + k) % specs.len();
            let Some(peer) = peers[p].as_mut() else {
                continue;
            };
            if let Some(d) = Dirty::now() {
                peak_dirty = peak_dirty.max(d.bytes);
                throttled[p] += usize::from(d.bytes > d.freerun);
            }
            let wait_before = runqueue_wait_secs();
            let start = Instant::now();
            let result = peer.put_batch(&batch);
            secs[p] += start.elapsed().as_secs_f64();
            waited[p] += runqueue_wait_secs() - wait_before;
            if let Err(e) = result {
                eprintln!("{}: put: {e}", specs[p].id);
                rows[p].error = Some(format!("put: {e}"));
                peers[p] = None;
            }
        }
        if writeback == Writeback::Wait {
            let start = Instant::now();
            sync_filesystem(root)?;
            flush_secs += start.elapsed().as_secs_f64();
        }
    }
    let rounds = w.len().div_ceil(BATCH);
    let freerun = Dirty::now().map_or(0, |d| d.freerun);
    eprintln!(
        "put: dirty pages peaked at {} MiB (the kernel holds writers back past {} MiB); {}",
        peak_dirty >> 20,
        freerun >> 20,
        match writeback {
            Writeback::Wait => format!("{flush_secs:.1} s waiting for writeback, untimed"),
            Writeback::Pile => "no wait for writeback".into(),
        }
    );
    run.notes.push(match writeback {
        Writeback::Wait => format!(
            "Writeback: after each round of puts the benchmark waited, untimed, for the \
             filesystem's dirty pages to reach the disk ({flush_secs:.0} s in all), so no put met \
             another peer's writeback: dirty pages peaked at {} MiB, against the {} MiB past \
             which the kernel holds writers to the disk's pace.",
            peak_dirty >> 20,
            freerun >> 20
        ),
        Writeback::Pile => format!(
            "Writeback: no wait between rounds (`--writeback pile`): dirty pages peaked at {} \
             MiB; past {} MiB the kernel holds every writer to the disk's pace, and each \
             peer's batches begun past it are counted on stderr.",
            peak_dirty >> 20,
            freerun >> 20
        ),
    });
    for (p, row) in rows.iter_mut().enumerate() {
        if peers[p].is_some() {
            eprintln!(
                "{}: put {:.2} s (waited for a CPU {:.2} s; {} of {rounds} batches begun past \
                 the dirty limit)",
                specs[p].id, secs[p], waited[p], throttled[p]
            );
            row.put = Some(Rate::new(w.len(), w.value_bytes(), secs[p]));
            row.account(secs[p], waited[p]);
        }
    }
    Ok(peers)
}

/// The machine's dirty and under-writeback page cache, and the point past
/// which the kernel throttles writers: halfway between its background and
/// foreground dirty thresholds (`/proc/vmstat`, Linux only).
struct Dirty {
    bytes: u64,
    freerun: u64,
}

impl Dirty {
    fn now() -> Option<Dirty> {
        let text = std::fs::read_to_string("/proc/vmstat").ok()?;
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<u64>().ok())
        };
        let page = 4096;
        Some(Dirty {
            bytes: (field("nr_dirty")? + field("nr_writeback")?) * page,
            freerun: (field("nr_dirty_threshold")? + field("nr_dirty_background_threshold")?) / 2
                * page,
        })
    }
}

/// Writes the dirty pages of the filesystem holding `dir` to its disk and
/// waits for them (`sync -f`, syncfs(2)).
fn sync_filesystem(dir: &Path) -> Res<()> {
    let status = Command::new("sync").arg("-f").arg(dir).status()?;
    if !status.success() {
        return Err(format!("sync -f {}: {status}", dir.display()).into());
    }
    Ok(())
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

/// Reads every file under `dir` once, so its pages are in the page cache.
fn warm(dir: &Path) -> Res<()> {
    use std::io::Read;
    let mut buf = vec![0u8; 1 << 20];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        for entry in std::fs::read_dir(&path)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                let mut file = std::fs::File::open(entry.path())?;
                while file.read(&mut buf)? > 0 {}
            }
        }
    }
    Ok(())
}

/// Every phase after the put, for one peer whose store holds the workload.
fn run_peer(
    spec: &PeerSpec,
    mut peer: Box<dyn Peer>,
    w: &Workload,
    dir: &Path,
    args: &RunArgs,
    row: &mut Row,
    run: &mut Run,
) -> Res<()> {
    let n = w.len();
    // The puts of every peer together outgrow the page cache: read this
    // peer's files once, untimed, so its gets start warm as they would
    // right after its own put.
    warm(dir)?;
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
        .chain(w.absent_keys().take(half).map(|k| (k, false)))
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
