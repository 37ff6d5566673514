//! `--mode gc`: issue 4's benchmark. A store of N keyed objects (one part
//! each, sizes "compiler artifacts", see [`crate::synth`]) and a git
//! repository holding the same payloads as loose objects; then, timed:
//!
//! 1. a single-thread read + BLAKE3 of every file under rask-store's
//!    `objects/` and rask-store's `verify::verify`, interleaved, two rounds
//!    each (the best of each is compared: the rounds show the noise);
//! 2. `git fsck --full` on the same content;
//! 3. removing every other entry from the index, then `gc::collect`
//!    (grace 0), against `git gc --prune=now` after the kept half was made
//!    reachable (`mktree` + `update-ref`, timed on its own).
//!
//! Rates are in MiB/s of value bytes for every row, so that they compare
//! work on the same content (rask-store's files add a 20-byte header, git's
//! are zlib'd).

use std::fmt::Write as _;
use std::fs;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Instant;

use rask_store::{Durability, Index, Lookup, Namespace, Store, StoreOptions};

use crate::peer::{Res, disk_usage};
use crate::peers::git::{git, run};
use crate::peers::rask::{collect_now, verify_clean_with};
use crate::peers::read_and_hash_tree;
use crate::synth::{self, Sizes};
use crate::{RunArgs, loadavg, timed};

const MIB: f64 = 1024.0 * 1024.0;
const NAMESPACE: &str = "rask-bench-gc";
const PART: &str = "ast";
/// Rounds of read + hash and verify, interleaved.
const ROUNDS: usize = 3;

/// One timed phase: seconds, and seconds of those spent waiting for a CPU.
#[derive(Clone, Copy, Default)]
struct Phase {
    secs: f64,
    waited: f64,
}

impl Phase {
    fn mib_s(self, bytes: u64) -> f64 {
        bytes as f64 / MIB / self.secs.max(1e-9)
    }
}

fn phase<T>(what: &str, id: &str, f: impl FnOnce() -> Res<T>) -> Res<(T, Phase)> {
    let (out, secs, waited) = timed(what, id, f)?;
    Ok((out, Phase { secs, waited }))
}

fn best(phases: &[Phase]) -> Phase {
    phases
        .iter()
        .copied()
        .min_by(|a, b| a.secs.total_cmp(&b.secs))
        .unwrap_or_default()
}

pub fn run_gc(args: &RunArgs) -> Res<()> {
    let with_git = args.peers.iter().any(|p| p == "git");
    let load_start = loadavg();
    let parent = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let temp = tempfile::Builder::new()
        .prefix("rask-bench-gc-")
        .tempdir_in(&parent)?;
    let n = args.n as u64;
    let seed = args.seed;
    let mut sizes: Vec<usize> = (0..n)
        .map(|i| synth::size(seed, i, Sizes::Artifacts))
        .collect();
    let value_bytes: u64 = sizes.iter().map(|&s| s as u64).sum();
    sizes.sort_unstable();
    let median = sizes.get(sizes.len() / 2).copied().unwrap_or(0);
    drop(sizes);
    eprintln!(
        "gc mode: n={n} seed={seed}, {:.0} MiB of values",
        value_bytes as f64 / MIB
    );

    // rask-store: one keyed entry (one part) per object.
    let root = temp.path().join("rask");
    let store = Store::create(&root, StoreOptions::with_durability(Durability::None))?;
    let index = Index::open(&store)?;
    let ns = Namespace::new(NAMESPACE)?;
    let ((), put) = phase("populate (Index::put)", "rask", || {
        synth::populate(&store, &index, &ns, (seed, n), Sizes::Artifacts, PART)
    })?;
    let rask_disk = disk_usage(&root)?;

    // The store was just written: its dirty pages would be written back
    // during the rounds below, and the kernel's writeback threads take CPU
    // from a two-thread verify more than from the one-thread reference
    // (whose other core is free for them). Write everything back first.
    // git's store is written only after the rounds, for the same reason:
    // with both stores in memory (~13 GB at 1M) the page cache is nearly
    // full and reclaim runs beside the rounds.
    let synced = Instant::now();
    let status = std::process::Command::new("sync").status()?;
    if !status.success() {
        return Err(format!("sync failed: {status}").into());
    }
    eprintln!(
        "sync (write back the store before the timed rounds): {:.1} s",
        synced.elapsed().as_secs_f64()
    );

    // 1. verify against one thread reading and hashing the same files.
    let objects_dir = root.join("objects");
    let mut readhash = Vec::new();
    let mut verify = Vec::new();
    let mut walks = Vec::new();
    let mut verify_report = None;
    for round in 1..=ROUNDS {
        let ((files, _), p) = phase(&format!("read+hash round {round}"), "readhash", || {
            read_and_hash_tree(&objects_dir)
        })?;
        if files < n {
            return Err(format!("read+hash found {files} files, expected {n}").into());
        }
        readhash.push(p);
        // When the walk over the 256 fanout directories (the re-hash of
        // every object) ends; the rest is links, index files and entries.
        let walk_end: Mutex<Option<Instant>> = Mutex::new(None);
        let start = Instant::now();
        let (report, p) = phase(&format!("verify round {round}"), "rask", || {
            verify_clean_with(&store, &|progress| {
                if progress.dirs_done == 256 {
                    *walk_end.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
                }
            })
        })?;
        let walk_end = walk_end.into_inner().unwrap_or_else(|e| e.into_inner());
        walks.push(walk_end.map_or(f64::NAN, |t| (t - start).as_secs_f64()));
        if report.objects < n || report.entries < n {
            return Err(format!(
                "verify checked {} objects and {} entries, expected {n}",
                report.objects, report.entries
            )
            .into());
        }
        verify.push(p);
        verify_report = Some(report);
    }
    let threads = verify_report.map_or(0, |r| r.threads);

    // git: the same payloads, loose (fast-import into a scratch repository,
    // then unpack-objects: far faster than hash-object, and not timed).
    let repo = temp.path().join("git");
    let (git_ids, git_setup) = if with_git {
        let (ids, setup) = phase("populate (fast-import + unpack-objects)", "git", || {
            populate_git(&repo, &temp.path().join("git-scratch"), n, seed)
        })?;
        (ids, Some(setup))
    } else {
        (Vec::new(), None)
    };
    let git_disk = if with_git {
        Some(disk_usage(&repo.join("objects"))?)
    } else {
        None
    };

    // 2. git fsck --full.
    let fsck = if with_git {
        Some(
            phase("fsck --full", "git", || {
                run(git(&repo).args(["fsck", "--full", "--no-dangling"]))
            })?
            .1,
        )
    } else {
        None
    };

    // 3. gc of half the store.
    let doomed = (0..n).filter(|i| i % 2 == 1);
    let ((), remove) = phase("Index::remove of half the entries", "rask", || {
        for i in doomed {
            if !index.remove(&synth::key(&ns, seed, i)?)? {
                return Err(format!("entry {i} was not in the index").into());
            }
        }
        Ok(())
    })?;
    let (gc_report, gc) = phase("gc::collect (grace 0)", "rask", || {
        collect_now(&store, &index)
    })?;
    let rask_after = disk_usage(&root)?;
    check_kept(&store, &index, &ns, seed, n)?;

    let (git_reach, git_gc, git_after) = if with_git {
        let listing = phase("mktree + update-ref of the kept half", "git", || {
            let mut listing = String::with_capacity(git_ids.len() * 32);
            for (i, id) in git_ids.iter().enumerate().step_by(2) {
                let _ = writeln!(listing, "100644 blob {id}\t{i}");
            }
            let tree = pipe(&repo, &["mktree"], listing.as_bytes())?;
            let tree = String::from_utf8(tree)?;
            run(git(&repo).args(["update-ref", "refs/keep", tree.trim()]))?;
            Ok(())
        })?
        .1;
        let gc = phase("gc --prune=now", "git", || {
            run(git(&repo).args(["gc", "--prune=now", "-q"]))
        })?
        .1;
        (
            Some(listing),
            Some(gc),
            Some(disk_usage(&repo.join("objects"))?),
        )
    } else {
        (None, None, None)
    };
    drop(index);
    drop(store);
    let load_end = loadavg();

    // The table.
    let mut out = String::new();
    let _ = writeln!(
        out,
        "gc/verify: {} objects (one keyed entry each), seed {seed}, {:.0} MiB of values \
         (\"compiler artifact\" sizes: median {median} B, mean {} B); load average {load_start} \
         at the start, {load_end} at the end\n",
        group(n),
        value_bytes as f64 / MIB,
        value_bytes / n.max(1),
    );
    out.push_str(
        "| phase | rask-store | peer | rask-store ÷ peer | target | verdict |\n\
         |---|---|---|---|---|---|\n",
    );
    let (v, r) = (best(&verify), best(&readhash));
    let rate = |p: Phase| {
        format!(
            "{:.0} MiB/s · {:.2} s (waited {:.2} s)",
            p.mib_s(value_bytes),
            p.secs,
            p.waited
        )
    };
    let verdict = |ratio: f64, min: f64| if ratio >= min { "met" } else { "MISSED" };
    let ratio = r.secs / v.secs.max(1e-9);
    let mut round_ratios: Vec<f64> = verify
        .iter()
        .zip(&readhash)
        .map(|(v, r)| r.secs / v.secs.max(1e-9))
        .collect();
    round_ratios.sort_by(f64::total_cmp);
    let median_ratio = round_ratios[round_ratios.len() / 2];
    let _ = writeln!(
        out,
        "| verify ({threads} threads) vs one-thread read + BLAKE3 of the same files, best of \
         {ROUNDS} each (median of the rounds' ratios: {median_ratio:.2}×) | {} | {} | \
         {ratio:.2}× | ≥ 1.7× | {} |",
        rate(v),
        rate(r),
        verdict(ratio, 1.7)
    );
    for (round, ((v, r), walk)) in verify.iter().zip(&readhash).zip(&walks).enumerate() {
        let _ = writeln!(
            out,
            "| … round {} (verify's object walk: {walk:.2} s) | {} | {} | {:.2}× | | |",
            round + 1,
            rate(*v),
            rate(*r),
            r.secs / v.secs.max(1e-9)
        );
    }
    match fsck {
        Some(f) => {
            let ratio = f.secs / v.secs.max(1e-9);
            let _ = writeln!(
                out,
                "| verify vs `git fsck --full` (loose objects) | {} | {} | {ratio:.2}× | ≥ 10× | {} |",
                rate(v),
                rate(f),
                verdict(ratio, 10.0)
            );
        }
        None => {
            out.push_str("| verify vs `git fsck --full` | | not run | | ≥ 10× | not measured |\n")
        }
    }
    let gc_cell = format!(
        "{:.2} s (waited {:.2} s; removed {} objects, {:.0} MiB)",
        gc.secs,
        gc.waited,
        group(gc_report.objects.removed_objects),
        gc_report.objects.removed_bytes as f64 / MIB
    );
    match git_gc {
        Some(g) => {
            let _ = writeln!(
                out,
                "| gc of half the store vs `git gc --prune=now` | {gc_cell} | {:.2} s | {:.2}× | – | – |",
                g.secs,
                g.secs / gc.secs.max(1e-9)
            );
        }
        None => {
            let _ = writeln!(
                out,
                "| gc of half the store | {gc_cell} | not run | | – | – |"
            );
        }
    }
    let _ = writeln!(
        out,
        "| removing the doomed half first: `Index::remove` × {} / `mktree` + `update-ref` | {:.2} s | {} | | | |",
        group(n / 2),
        remove.secs,
        git_reach.map_or("–".into(), |p| format!("{:.2} s", p.secs)),
    );
    let disk = |d: Option<(u64, u64)>| match d {
        Some((bytes, files)) => format!("{:.0} MiB in {} files", bytes as f64 / MIB, group(files)),
        None => "–".into(),
    };
    let _ = writeln!(
        out,
        "| disk before gc | {} | {} | | | |\n| disk after gc | {} | {} | | | |",
        disk(Some(rask_disk)),
        disk(git_disk),
        disk(Some(rask_after)),
        disk(git_after),
    );
    let _ = writeln!(
        out,
        "| setup (not part of any ratio) | `Index::put` × {}: {:.1} s, {}/s | {} | | | |",
        group(n),
        put.secs,
        group((n as f64 / put.secs.max(1e-9)) as u64),
        git_setup.map_or("–".into(), |p| format!(
            "`fast-import` + `unpack-objects`: {:.1} s",
            p.secs
        )),
    );
    out.push_str(
        "\nMiB/s are of value bytes for every row. Page cache warm for every phase (the stores \
         were just written; at 1M both together are ~13 GB, which fits in 24 GiB of memory), and \
         nothing left to write back (`sync` before the first round; git's store is written \
         after the verify rounds, so they run with only rask-store's files in memory). The read + hash reference \
         reads and BLAKE3-hashes every file under rask-store's `objects/` on one thread. \
         verify is `verify::verify` (every object re-hashed, links, index files, every \
         entry's closure); \"object walk\" is the time until its last fanout directory was \
         hashed, the rest is checking links, index files and entries. gc is `Index::remove` of every other key, then `gc::collect` with \
         grace 0 (as `rask-store gc --grace 0 --force`: no build runs beside the benchmark); \
         git's is `git gc --prune=now` after `mktree` + `update-ref` of the kept half. \
         \"waited\" = seconds the harness's thread was runnable but not running (schedstat); \
         it does not see verify's worker threads or git's processes.\n",
    );
    println!("{out}");
    eprintln!("removing the stores");
    temp.close()?;
    Ok(())
}

/// Reads back a sample of the kept half, and checks the removed half is gone.
fn check_kept(store: &Store, index: &Index, ns: &Namespace, seed: u64, n: u64) -> Res<()> {
    let mut want = Vec::new();
    for i in (0..n).step_by((n as usize / 1000).max(1)) {
        let key = synth::key(ns, seed, i)?;
        let got = index.get(store, &key, PART)?;
        match (i % 2, got) {
            (0, Lookup::Hit(bytes)) => {
                synth::value(seed, i, Sizes::Artifacts, &mut want);
                if bytes != want {
                    return Err(format!("kept entry {i} read back wrong after gc").into());
                }
            }
            (0, Lookup::Miss(m)) => {
                return Err(format!("kept entry {i} lost by gc: {}", m.detail).into());
            }
            (_, Lookup::Hit(_)) => return Err(format!("removed entry {i} still reads").into()),
            (_, Lookup::Miss(_)) => {}
        }
    }
    Ok(())
}

/// Makes a bare repository at `repo` holding every payload as a loose
/// object; returns the blob ids in order.
fn populate_git(repo: &Path, scratch: &Path, n: u64, seed: u64) -> Res<Vec<String>> {
    for dir in [repo, scratch] {
        run(Command::new("git")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .args(["init", "-q", "--bare"])
            .arg(dir))?;
        for (name, value) in [("core.fsync", "none"), ("gc.auto", "0")] {
            run(git(dir).args(["config", name, value]))?;
        }
    }
    let marks = scratch.join("marks");
    let mut child = git(scratch)
        .arg("fast-import")
        .arg("--quiet")
        .arg(format!("--export-marks={}", marks.display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    {
        let mut stdin = BufWriter::with_capacity(1 << 20, child.stdin.take().ok_or("no stdin")?);
        let mut buf = Vec::new();
        for i in 0..n {
            synth::value(seed, i, Sizes::Artifacts, &mut buf);
            write!(stdin, "blob\nmark :{}\ndata {}\n", i + 1, buf.len())?;
            stdin.write_all(&buf)?;
            stdin.write_all(b"\n")?;
        }
        stdin.flush()?;
    }
    let status = child.wait()?;
    if !status.success() {
        return Err(format!("git fast-import failed: {status}").into());
    }
    let mut ids = vec![String::new(); n as usize];
    for line in fs::read_to_string(&marks)?.lines() {
        let (mark, id) = line.split_once(' ').ok_or("bad marks line")?;
        let mark: usize = mark.trim_start_matches(':').parse()?;
        *ids.get_mut(mark.wrapping_sub(1))
            .ok_or("mark out of range")? = id.to_string();
    }
    if ids.iter().any(String::is_empty) {
        return Err("fast-import did not mark every blob".into());
    }
    for pack in fs::read_dir(scratch.join("objects/pack"))? {
        let pack = pack?.path();
        if pack.extension().is_some_and(|e| e == "pack") {
            let status = git(repo)
                .args(["unpack-objects", "-q"])
                .stdin(fs::File::open(&pack)?)
                .status()?;
            if !status.success() {
                return Err(format!("git unpack-objects failed: {status}").into());
            }
        }
    }
    fs::remove_dir_all(scratch)?;
    Ok(ids)
}

/// Pipes `input` to `git <args>` in `repo` and returns its output.
fn pipe(repo: &Path, args: &[&str], input: &[u8]) -> Res<Vec<u8>> {
    let mut child = git(repo)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let writer = std::thread::scope(|scope| {
        let writer = scope.spawn(move || stdin.write_all(input));
        let out = child.wait_with_output();
        (writer.join(), out)
    });
    let (written, out) = writer;
    written.map_err(|_| "writer thread panicked")??;
    let out = out?;
    if !out.status.success() {
        return Err(format!("git {args:?} failed: {}", out.status).into());
    }
    Ok(out.stdout)
}

/// 1234567 → "1,234,567".
pub fn group(x: u64) -> String {
    crate::report::group(x as f64)
}
