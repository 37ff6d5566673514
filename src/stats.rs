//! Persistent statistics: cache hits and misses per namespace and tier,
//! puts, and store size by object kind — answered without walking the store.
//!
//! # File format: `stats/journal`
//!
//! Append-only text, one record per line:
//!
//! ```text
//! <16 hex: first 8 bytes of BLAKE3(body)> <body>\n
//! body = v1 t=<unix seconds> <type> <key=value>...
//! ```
//!
//! | type | fields |
//! |---|---|
//! | `tier` | `ns=<namespace or ->` `tier=<name>` `hits` `absent` `corrupt` `dangling` `puts` `put_bytes` |
//! | `kind` | `kind=<kind name>` `objects=<signed delta>` `bytes=<signed delta>` |
//! | `gc` | `objects=<removed>` `bytes=<reclaimed>` `entries=<removed>` |
//!
//! Every append starts with `\n`, so a torn line left by a crashed process
//! ends there and cannot swallow the next record; empty lines are skipped.
//! A line whose checksum does not match its body (a torn append, garbage)
//! is skipped and counted in [`StatsReport::bad_lines`]; it never corrupts
//! the totals. Unknown record types are skipped too.
//!
//! # Concurrency
//! Each process counts in memory (atomics and a short mutex, never a
//! cross-process lock) and appends its deltas in a single `write` to a file
//! opened with `O_APPEND` when the store is flushed, so concurrent builds
//! never wait for each other to count. Object sizes are tracked as deltas
//! (+ on a new object, − when gc or repair removes one); two processes that
//! publish the same new object at the same instant both count it, so size
//! by kind is exact only up to such races.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, IoContext, Result};
use crate::layout::Layout;
use crate::object::Kind;

/// Why a lookup missed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MissCause {
    /// Nothing was stored under the key.
    Absent,
    /// Something was stored, but its bytes failed verification.
    Corrupt,
    /// The entry exists but an object it points to is gone.
    Dangling,
}

/// Counters for one namespace and tier.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TierCounters {
    /// Lookups that found a verified value.
    pub hits: u64,
    /// Misses: nothing stored.
    pub absent: u64,
    /// Misses: stored bytes failed verification.
    pub corrupt: u64,
    /// Misses: an entry pointed at a missing object.
    pub dangling: u64,
    /// Values stored.
    pub puts: u64,
    /// Payload bytes stored.
    pub put_bytes: u64,
}

impl TierCounters {
    /// All misses, whatever the cause.
    pub fn misses(&self) -> u64 {
        self.absent + self.corrupt + self.dangling
    }

    fn add(&mut self, other: &TierCounters) {
        self.hits += other.hits;
        self.absent += other.absent;
        self.corrupt += other.corrupt;
        self.dangling += other.dangling;
        self.puts += other.puts;
        self.put_bytes += other.put_bytes;
    }

    fn is_zero(&self) -> bool {
        *self == TierCounters::default()
    }
}

/// Object count and bytes on disk for one kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KindSize {
    /// Object files.
    pub objects: i64,
    /// Bytes of object files.
    pub bytes: i64,
}

/// What the last gc did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GcSummary {
    /// When it finished (unix seconds).
    pub time: u64,
    /// Objects removed.
    pub objects: u64,
    /// Bytes reclaimed.
    pub bytes: u64,
    /// Index entries removed.
    pub entries: u64,
}

/// Totals read back from the journal.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatsReport {
    /// Per (namespace, tier); the namespace is `-` for operations outside one.
    pub tiers: BTreeMap<(String, String), TierCounters>,
    /// Store size per object kind.
    pub kinds: BTreeMap<Kind, KindSize>,
    /// The last gc, if any ran.
    pub last_gc: Option<GcSummary>,
    /// Lines skipped because their checksum failed (torn appends, garbage).
    pub bad_lines: u64,
}

/// In-memory counters of one store handle, appended to the journal on flush.
#[derive(Debug, Default)]
pub struct StatsRecorder {
    kinds: [(AtomicI64, AtomicI64); Kind::ALL.len()],
    tiers: Mutex<BTreeMap<(String, String), TierCounters>>,
    gc: Mutex<Option<GcSummary>>,
}

fn kind_slot(kind: Kind) -> usize {
    kind as usize - 1
}

impl StatsRecorder {
    /// Counts an object file added (`sign` 1) or removed (`sign` -1).
    pub fn object_changed(&self, kind: Kind, file_bytes: u64, sign: i64) {
        let (objects, bytes) = &self.kinds[kind_slot(kind)];
        objects.fetch_add(sign, Ordering::Relaxed);
        bytes.fetch_add(sign * file_bytes as i64, Ordering::Relaxed);
    }

    /// Adds `delta` to the counters of `namespace` (`-` for none) and `tier`.
    pub fn count(&self, namespace: &str, tier: &str, delta: TierCounters) {
        let mut tiers = self.tiers.lock().unwrap_or_else(|p| p.into_inner());
        tiers
            .entry((namespace.to_string(), tier.to_string()))
            .or_default()
            .add(&delta);
    }

    /// Records a finished gc.
    pub fn gc_finished(&self, summary: GcSummary) {
        *self.gc.lock().unwrap_or_else(|p| p.into_inner()) = Some(summary);
    }

    /// Takes everything counted since the last drain, as journal lines.
    fn drain_lines(&self) -> String {
        let now = unix_now();
        let mut out = String::new();
        let tiers = std::mem::take(&mut *self.tiers.lock().unwrap_or_else(|p| p.into_inner()));
        for ((ns, tier), c) in tiers {
            if c.is_zero() {
                continue;
            }
            push_line(
                &mut out,
                &format!(
                    "v1 t={now} tier ns={ns} tier={tier} hits={} absent={} corrupt={} \
                     dangling={} puts={} put_bytes={}",
                    c.hits, c.absent, c.corrupt, c.dangling, c.puts, c.put_bytes
                ),
            );
        }
        for kind in Kind::ALL {
            let (objects, bytes) = &self.kinds[kind_slot(kind)];
            let objects = objects.swap(0, Ordering::Relaxed);
            let bytes = bytes.swap(0, Ordering::Relaxed);
            if objects != 0 || bytes != 0 {
                push_line(
                    &mut out,
                    &format!("v1 t={now} kind kind={kind} objects={objects} bytes={bytes}"),
                );
            }
        }
        if let Some(gc) = self.gc.lock().unwrap_or_else(|p| p.into_inner()).take() {
            push_line(
                &mut out,
                &format!(
                    "v1 t={} gc objects={} bytes={} entries={}",
                    gc.time, gc.objects, gc.bytes, gc.entries
                ),
            );
        }
        out
    }

    /// Appends everything counted so far to the store's journal, in one write.
    ///
    /// # Errors
    /// [`Error::Io`] naming the journal.
    pub fn flush(&self, layout: &Layout) -> Result<()> {
        let lines = self.drain_lines();
        if lines.is_empty() {
            return Ok(());
        }
        // The leading newline ends a torn line a crashed process may have
        // left, so it cannot swallow this record.
        let lines = format!("\n{lines}");
        let path = layout.stats_journal();
        let open = || OpenOptions::new().create(true).append(true).open(&path);
        let mut file = match open() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let dir = layout.stats_dir();
                fs::create_dir_all(&dir).at("create directory", &dir)?;
                open()
            }
            other => other,
        }
        .at("open", &path)?;
        file.write_all(lines.as_bytes()).at("append to", &path)
    }
}

fn push_line(out: &mut String, body: &str) {
    let sum = blake3::hash(body.as_bytes());
    out.push_str(&hex::encode(&sum.as_bytes()[..8]));
    out.push(' ');
    out.push_str(body);
    out.push('\n');
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Reads and sums the statistics journal of the store at `layout`.
///
/// # Errors
/// [`Error::Io`] when the journal exists but cannot be read.
pub fn read(layout: &Layout) -> Result<StatsReport> {
    let path = layout.stats_journal();
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::io("read", &path, e)),
    };
    let mut report = StatsReport::default();
    for line in bytes.split(|&b| b == b'\n') {
        if line.is_empty() {
            continue;
        }
        if !apply_line(&mut report, line) {
            report.bad_lines += 1;
        }
    }
    Ok(report)
}

/// Applies one journal line; false when it fails its checksum or cannot be parsed.
fn apply_line(report: &mut StatsReport, line: &[u8]) -> bool {
    let Ok(line) = std::str::from_utf8(line) else {
        return false;
    };
    let Some((sum, body)) = line.split_once(' ') else {
        return false;
    };
    if hex::encode(&blake3::hash(body.as_bytes()).as_bytes()[..8]) != sum {
        return false;
    }
    let mut words = body.split(' ');
    if words.next() != Some("v1") {
        return true; // a newer record version: not ours to read, not damage
    }
    let _time = words.next();
    let record = words.next();
    let fields: BTreeMap<&str, &str> = words.filter_map(|w| w.split_once('=')).collect();
    let num = |key: &str| fields.get(key).and_then(|v| v.parse::<u64>().ok());
    let signed = |key: &str| fields.get(key).and_then(|v| v.parse::<i64>().ok());
    match record {
        Some("tier") => {
            let (Some(ns), Some(tier)) = (fields.get("ns"), fields.get("tier")) else {
                return false;
            };
            let delta = TierCounters {
                hits: num("hits").unwrap_or(0),
                absent: num("absent").unwrap_or(0),
                corrupt: num("corrupt").unwrap_or(0),
                dangling: num("dangling").unwrap_or(0),
                puts: num("puts").unwrap_or(0),
                put_bytes: num("put_bytes").unwrap_or(0),
            };
            report
                .tiers
                .entry((ns.to_string(), tier.to_string()))
                .or_default()
                .add(&delta);
        }
        Some("kind") => {
            let Some(kind) = fields.get("kind").and_then(|k| k.parse::<Kind>().ok()) else {
                return false;
            };
            let size = report.kinds.entry(kind).or_default();
            size.objects += signed("objects").unwrap_or(0);
            size.bytes += signed("bytes").unwrap_or(0);
        }
        Some("gc") => {
            report.last_gc = Some(GcSummary {
                time: _time
                    .and_then(|t| t.strip_prefix("t="))
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(0),
                objects: num("objects").unwrap_or(0),
                bytes: num("bytes").unwrap_or(0),
                entries: num("entries").unwrap_or(0),
            });
        }
        _ => {}
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_survive_a_flush_and_torn_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let rec = StatsRecorder::default();
        rec.object_changed(Kind::Ast, 100, 1);
        rec.object_changed(Kind::Ast, 50, 1);
        rec.object_changed(Kind::Ast, 50, -1);
        let hit = TierCounters {
            hits: 3,
            ..TierCounters::default()
        };
        rec.count("rask-1.0", "instance", hit);
        rec.count(
            "rask-1.0",
            "instance",
            TierCounters {
                dangling: 1,
                ..TierCounters::default()
            },
        );
        rec.flush(&layout).unwrap();
        rec.flush(&layout).unwrap(); // nothing new: no duplicate lines
        // A torn append and garbage.
        let mut f = OpenOptions::new()
            .append(true)
            .open(layout.stats_journal())
            .unwrap();
        f.write_all(b"0123456789abcdef v1 t=1 tier ns=x tier=y hits=99\ngarbage")
            .unwrap();
        rec.count("rask-1.0", "instance", hit);
        rec.flush(&layout).unwrap();

        let report = read(&layout).unwrap();
        let c = report.tiers[&("rask-1.0".to_string(), "instance".to_string())];
        assert_eq!((c.hits, c.dangling, c.misses()), (6, 1, 1));
        assert_eq!(
            report.kinds[&Kind::Ast],
            KindSize {
                objects: 1,
                bytes: 100
            }
        );
        assert_eq!(report.bad_lines, 2, "the forged line and the torn tail");
        assert!(
            !report
                .tiers
                .contains_key(&("x".to_string(), "y".to_string()))
        );
    }
}
