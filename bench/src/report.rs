//! The table: absolute figures, ratios against rask-store, and the targets
//! of the benchmark issues, each marked met or MISSED.

use std::fmt::Write;

use crate::workload::Workload;

const MIB: f64 = 1024.0 * 1024.0;

/// Operations and bytes done in some seconds.
#[derive(Clone, Copy, Debug)]
pub struct Rate {
    pub ops: u64,
    pub bytes: u64,
    pub secs: f64,
}

impl Rate {
    pub fn new(ops: usize, bytes: u64, secs: f64) -> Rate {
        Rate {
            ops: ops as u64,
            bytes,
            secs: secs.max(1e-9),
        }
    }

    pub fn per_sec(&self) -> f64 {
        self.ops as f64 / self.secs
    }

    pub fn mib_per_sec(&self) -> f64 {
        self.bytes as f64 / MIB / self.secs
    }
}

/// One row of the table.
#[derive(Debug)]
pub struct Row {
    pub id: &'static str,
    pub label: &'static str,
    pub durability: &'static str,
    pub put: Option<Rate>,
    pub get: Option<Rate>,
    pub get_fresh: Option<Rate>,
    pub exists: Option<Rate>,
    pub verify: Option<Rate>,
    pub delete: Option<Rate>,
    /// Bytes on disk and files, after every value was put.
    pub disk: Option<(u64, u64)>,
    /// Bytes on disk and files after half was deleted and space reclaimed.
    pub disk_after: Option<(u64, u64)>,
    /// Value bytes still stored after the delete.
    pub kept_bytes: u64,
    /// Seconds of the timed phases, and of those, seconds spent runnable
    /// but waiting for a CPU.
    pub timed_secs: f64,
    pub waited_secs: f64,
    pub error: Option<String>,
}

impl Row {
    pub fn new(id: &'static str, label: &'static str, durability: &'static str) -> Row {
        Row {
            id,
            label,
            durability,
            put: None,
            get: None,
            get_fresh: None,
            exists: None,
            verify: None,
            delete: None,
            disk: None,
            disk_after: None,
            kept_bytes: 0,
            timed_secs: 0.0,
            waited_secs: 0.0,
            error: None,
        }
    }

    /// Adds a timed phase to the contention figure.
    pub fn account(&mut self, secs: f64, waited: f64) {
        self.timed_secs += secs;
        self.waited_secs += waited.max(0.0);
    }
}

/// A whole run: the workload's shape, the rows and the notes under the table.
pub struct Run {
    pub n: usize,
    pub seed: u64,
    pub value_bytes: u64,
    pub median: usize,
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
    /// The load average at the start and end of the run.
    pub load: String,
}

impl Run {
    pub fn new(w: &Workload) -> Run {
        let sizes = w.sorted_sizes();
        Run {
            n: w.len(),
            seed: w.seed,
            value_bytes: w.value_bytes(),
            median: sizes.get(sizes.len() / 2).copied().unwrap_or(0),
            rows: Vec::new(),
            notes: Vec::new(),
            load: String::new(),
        }
    }

    fn row(&self, id: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.id == id && r.error.is_none())
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "W1: {} keyed values, seed {}, {:.0} MiB of values (median {} B, mean {} B); {}\n",
            group(self.n as f64),
            self.seed,
            self.value_bytes as f64 / MIB,
            self.median,
            self.value_bytes / self.n.max(1) as u64,
            self.load,
        );
        out.push_str(
            "| store | durability | put | get, same process | get, fresh process | \
             exists (½ absent) | verify | delete ½ + reclaim | disk / value bytes (files) | \
             after delete | waited for a CPU |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
        );
        let rask = self.row("rask");
        for row in &self.rows {
            let _ = write!(out, "| {} | {} ", row.label, row.durability);
            if let Some(err) = &row.error {
                let _ = writeln!(out, "| FAILED: {} ||||||||", err.replace('|', "/"));
                continue;
            }
            let ratio = |pick: fn(&Row) -> Option<Rate>| -> String {
                match (rask.and_then(pick), pick(row)) {
                    (Some(r), Some(p)) => format!(" · {:.2}×", r.per_sec() / p.per_sec()),
                    _ => String::new(),
                }
            };
            let speed = |rate: Option<Rate>, with_mib: bool, ratio: String| match rate {
                None => "–".to_string(),
                Some(r) if with_mib => format!(
                    "{}/s · {:.0} MiB/s{ratio}",
                    group(r.per_sec()),
                    r.mib_per_sec()
                ),
                Some(r) => format!("{}/s{ratio}", group(r.per_sec())),
            };
            let _ = write!(
                out,
                "| {} | {} | {} | {} ",
                speed(row.put, true, ratio(|r| r.put)),
                speed(row.get, true, ratio(|r| r.get)),
                speed(row.get_fresh, true, ratio(|r| r.get_fresh)),
                speed(row.exists, false, ratio(|r| r.exists)),
            );
            let verify = match row.verify {
                Some(v) => format!(
                    "{:.0} MiB/s · {:.1} s{}",
                    v.mib_per_sec(),
                    v.secs,
                    ratio(|r| r.verify)
                ),
                None if row.put.is_some() => "n/a".into(),
                None => "–".into(),
            };
            let delete = match row.delete {
                Some(d) => format!("{:.1} s{}", d.secs, ratio(|r| r.delete)),
                None => "–".into(),
            };
            let disk = |d: Option<(u64, u64)>, value_bytes: u64| match d {
                Some((bytes, files)) => format!(
                    "{:.2} ({})",
                    bytes as f64 / value_bytes.max(1) as f64,
                    group(files as f64)
                ),
                None => "–".into(),
            };
            let _ = writeln!(
                out,
                "| {verify} | {delete} | {} | {} | {:.0}% |",
                disk(row.disk, self.value_bytes),
                disk(row.disk_after, row.kept_bytes),
                100.0 * row.waited_secs / row.timed_secs.max(1e-9),
            );
        }
        out.push_str(
            "\n`N×` = rask-store (keyed index)'s figure ÷ this row's: above 1 means it is faster. \
             Every get checks every byte against the generated value. \
             \"Fresh process\" re-runs the binary and times open + every get, page cache warm. \
             Disk = allocated blocks of the store directory ÷ value bytes (after delete: ÷ the \
             value bytes still stored). \"Waited for a CPU\" = share of the timed phases the \
             benchmark's main thread was runnable but not running (Linux schedstat): how much \
             other load on the machine stretched that row (it does not see a peer's own \
             child processes or threads).\n",
        );
        for note in &self.notes {
            let _ = writeln!(out, "- {note}");
        }
        out.push('\n');
        out.push_str(&self.targets());
        out
    }

    fn targets(&self) -> String {
        type Pick = fn(&Row) -> Option<Rate>;
        let put: Pick = |r| r.put;
        let get: Pick = |r| r.get;
        let fresh: Pick = |r| r.get_fresh;
        let exists: Pick = |r| r.exists;
        let verify: Pick = |r| r.verify;
        // (target, phase, rask-store row, peer row, minimum ratio): issue 7's
        // targets are the keyed store's; issue 2's are the object store's.
        let targets: [(&str, Pick, &str, &str, f64); 12] = [
            ("put ≥ 0.9× raw filesystem", put, "rask", "rawfs", 0.9),
            ("put ≥ 2.5× SQLite", put, "rask", "sqlite", 2.5),
            ("put ≥ 4× cacache", put, "rask", "cacache", 4.0),
            ("put ≥ 10× git", put, "rask", "git", 10.0),
            ("get ≥ 0.9× raw filesystem", get, "rask", "rawfs", 0.9),
            ("get ≥ 1.2× redb", get, "rask", "redb", 1.2),
            ("get ≥ 1.2× SQLite", get, "rask", "sqlite", 1.2),
            ("existence ≥ 4× SQLite", exists, "rask", "sqlite", 4.0),
            (
                "verify ≥ 1.7× one-thread read + hash",
                verify,
                "rask",
                "readhash",
                1.7,
            ),
            (
                "issue 2 (objects row): put within 1.3× of raw fs",
                put,
                "rask-objects",
                "rawfs",
                1.0 / 1.3,
            ),
            (
                "issue 2 (objects row): get within 1.3× of raw fs",
                get,
                "rask-objects",
                "rawfs",
                1.0 / 1.3,
            ),
            (
                "issue 2 (objects row): fresh get within 1.3× of raw fs",
                fresh,
                "rask-objects",
                "rawfs",
                1.0 / 1.3,
            ),
        ];
        let mut out = String::from("| target | rask-store ÷ peer | verdict |\n|---|---|---|\n");
        for (name, pick, us, peer, min) in targets {
            let measured = match (self.row(us).and_then(pick), self.row(peer).and_then(pick)) {
                (Some(r), Some(p)) => Some(r.per_sec() / p.per_sec()),
                _ => None,
            };
            let _ = match measured {
                Some(m) => writeln!(
                    out,
                    "| {name} | {m:.2}× | {} |",
                    if m >= min { "met" } else { "MISSED" }
                ),
                None => writeln!(out, "| {name} | – | not measured |"),
            };
        }
        out
    }
}

/// 1234567.8 → "1,234,568".
pub fn group(x: f64) -> String {
    let digits = format!("{:.0}", x.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_thousands() {
        assert_eq!(group(0.0), "0");
        assert_eq!(group(999.4), "999");
        assert_eq!(group(1_234_567.8), "1,234,568");
    }

    #[test]
    fn a_missed_target_says_so() {
        let w = Workload::generate(10, 1);
        let mut run = Run::new(&w);
        let mut rask = Row::new("rask", "rask-store", "none");
        rask.put = Some(Rate::new(100, 0, 1.0));
        let mut raw = Row::new("rawfs", "raw", "none");
        raw.put = Some(Rate::new(200, 0, 1.0));
        run.rows.push(rask);
        run.rows.push(raw);
        let table = run.render();
        assert!(
            table.contains("| put ≥ 0.9× raw filesystem | 0.50× | MISSED |"),
            "{table}"
        );
        assert!(
            table.contains("| put ≥ 2.5× SQLite | – | not measured |"),
            "{table}"
        );
    }
}
