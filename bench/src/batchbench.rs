//! `--mode batch`: what `Store::get_many` and `Store::put_many` gain over
//! one call per object, and from what batch size on, for W1's values and
//! for values fifty times smaller (~300 B median, like small comptime
//! results).
//!
//! For each of the two value sets, two stores are filled with the same N
//! values, one with `put_object` per value and one with `put_many` per
//! batch of 1,000, alternating which goes first from batch to batch (so
//! both meet the same disk and page-cache state). Then, for each batch size,
//! every value is read back in one shuffled order, one batch at a time:
//! with `get_object_into` per id (one reused buffer, as the W1 objects row)
//! and with `get_many` per batch, each byte checked against the value,
//! alternating which goes first from round to round; three rounds, the
//! median kept.
//!
//! The crossover is what `PARALLEL_BYTES` and `PER_OBJECT` in
//! `src/store/many.rs` are set from: below it a batch is read on the
//! caller's thread alone, so the two columns should then be level.

use std::path::Path;
use std::time::Instant;

use rask_store::{Durability, Kind, ObjectBuf, ObjectId, Store, StoreOptions};

use crate::peer::Res;
use crate::workload::Workload;
use crate::{RunArgs, loadavg};

/// Batch sizes the gets are timed at.
const BATCHES: [usize; 7] = [4, 16, 32, 64, 128, 256, 1000];
/// Objects per `put_many` call.
const PUT_BATCH: usize = 1000;
const ROUNDS: usize = 3;
/// The smaller values are W1's first `1 / SHRINK` bytes.
const SHRINK: usize = 50;

pub fn run_batch(args: &RunArgs) -> Res<()> {
    let load_start = loadavg();
    let w = Workload::generate(args.n, args.seed);
    let tmp = match &args.dir {
        Some(dir) => tempfile::tempdir_in(dir)?,
        None => tempfile::tempdir()?,
    };
    let full: Vec<&[u8]> = (0..w.len()).map(|i| w.value(i)).collect();
    let small: Vec<&[u8]> = full.iter().map(|v| &v[..v.len() / SHRINK]).collect();
    let order = w.shuffled(7);
    let mut out = String::new();
    for (name, values) in [("W1 values", &full), ("W1 values ÷ 50", &small)] {
        let dir = tmp.path().join(name.replace([' ', '÷'], "_"));
        out += &measure(name, &dir, values, &order)?;
        std::fs::remove_dir_all(&dir)?;
    }
    println!(
        "Batch reads and writes: {} values, seed {}; load average {load_start} at the start, {} at the end\n\n{out}",
        w.len(),
        w.seed,
        loadavg()
    );
    Ok(())
}

fn measure(name: &str, dir: &Path, values: &[&[u8]], order: &[usize]) -> Res<String> {
    let options = StoreOptions::with_durability(Durability::None);
    let one = Store::create(dir.join("one"), options)?;
    let many = Store::create(dir.join("many"), options)?;
    let (mut one_secs, mut many_secs) = (0.0, 0.0);
    let mut ids = Vec::with_capacity(values.len());
    for (b, batch) in values.chunks(PUT_BATCH).enumerate() {
        let mut put_one = || -> Res<Vec<ObjectId>> {
            let start = Instant::now();
            let got: Vec<ObjectId> = batch
                .iter()
                .map(|v| one.put_object(Kind::Instance, &[], v))
                .collect::<Result<_, _>>()?;
            one_secs += start.elapsed().as_secs_f64();
            Ok(got)
        };
        let mut put_many = || -> Res<Vec<ObjectId>> {
            let objects: Vec<(&[ObjectId], &[u8])> = batch.iter().map(|v| (&[][..], *v)).collect();
            let start = Instant::now();
            let got = many.put_many(Kind::Instance, &objects)?;
            many_secs += start.elapsed().as_secs_f64();
            Ok(got)
        };
        let (a, b) = if b % 2 == 0 {
            let a = put_one()?;
            (a, put_many()?)
        } else {
            let b = put_many()?;
            (put_one()?, b)
        };
        if a != b {
            return Err(format!("{name}: put_many gave other ids than put_object").into());
        }
        ids.extend(a);
    }
    let bytes: usize = values.iter().map(|v| v.len()).sum();
    let mut sizes: Vec<usize> = values.iter().map(|v| v.len()).collect();
    sizes.sort_unstable();
    let n = values.len() as f64;
    let mut table = format!(
        "**{name}** ({} values, median {} B, mean {} B)\n\n\
         | call | one call per object | batch call | batch ÷ one (time) |\n|---|---|---|---|\n\
         | put, batches of {PUT_BATCH} | {:.2} µs | {:.2} µs | {:.2} |\n",
        values.len(),
        sizes[sizes.len() / 2],
        bytes / values.len().max(1),
        one_secs * 1e6 / n,
        many_secs * 1e6 / n,
        many_secs / one_secs,
    );
    drop(one);
    let gets = Gets {
        store: &many,
        ids: &ids,
        values,
        order,
    };
    for batch in BATCHES {
        let mut one_runs = Vec::new();
        let mut many_runs = Vec::new();
        for round in 0..ROUNDS {
            if round % 2 == 0 {
                one_runs.push(gets.one(batch)?);
                many_runs.push(gets.many(batch)?);
            } else {
                many_runs.push(gets.many(batch)?);
                one_runs.push(gets.one(batch)?);
            }
        }
        let (one, many) = (median(&mut one_runs), median(&mut many_runs));
        eprintln!("{name}: get, batches of {batch}: one {one:.3} s, get_many {many:.3} s");
        table += &format!(
            "| get, batches of {batch} | {:.2} µs | {:.2} µs | {:.2} |\n",
            one * 1e6 / n,
            many * 1e6 / n,
            many / one
        );
    }
    Ok(table + "\n")
}

fn median(runs: &mut [f64]) -> f64 {
    runs.sort_by(f64::total_cmp);
    runs[runs.len() / 2]
}

/// The gets of one value set: every value of `order`, batch by batch.
struct Gets<'a> {
    store: &'a Store,
    ids: &'a [ObjectId],
    values: &'a [&'a [u8]],
    order: &'a [usize],
}

impl Gets<'_> {
    /// Seconds for `get_object_into` of each id.
    fn one(&self, batch: usize) -> Res<f64> {
        // One buffer for the whole run, as a caller reading one object at a
        // time keeps: the best that path does.
        let mut buf = ObjectBuf::new();
        let start = Instant::now();
        for chunk in self.order.chunks(batch) {
            for &i in chunk {
                let object = self.store.get_object_into(&self.ids[i], &mut buf)?;
                if object.payload() != self.values[i] {
                    return Err(format!("value {i} read back wrong").into());
                }
            }
        }
        Ok(start.elapsed().as_secs_f64())
    }

    /// Seconds for one `get_many` per batch.
    fn many(&self, batch: usize) -> Res<f64> {
        let start = Instant::now();
        for chunk in self.order.chunks(batch) {
            let wanted: Vec<ObjectId> = chunk.iter().map(|&i| self.ids[i]).collect();
            self.store.get_many(&wanted, |j, object| -> Res<()> {
                let i = chunk[j];
                if object?.payload() != self.values[i] {
                    return Err(format!("value {i} read back wrong").into());
                }
                Ok(())
            })?;
        }
        Ok(start.elapsed().as_secs_f64())
    }
}
