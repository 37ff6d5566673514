//! `rask-store verify`: find (and repair) damage.

use std::io::{self, Write};
use std::time::Instant;

use rask_store::verify::{self, RepairMode, VerifyOptions, VerifyProgress};

use super::json::Value;
use super::progress::ProgressLine;
use super::{Context, EXIT_PROBLEMS, Failure, print_line};

/// Re-hash every object and check every link, index file and entry, ref,
/// reflog line, unfinished ref transaction, lock file, pin and the format
/// stamp; report every problem with its path and kind.
///
/// Exit 0 when the store is clean (or --repair fixed everything it found;
/// litter — stale lock files, dead pins — is reported but is not damage),
/// 3 when damage remains, 1 when verify could not run. Safe to run while
/// other processes use the store.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Move damaged objects and stray files to quarantine/ (with every object
    /// that reaches something missing), drop index entries whose parts are
    /// missing or corrupt, retire refs whose closure is incomplete (logged in
    /// their reflog), complete unfinished ref transactions, rewrite damaged
    /// reflogs (originals kept in quarantine/), remove stale locks and dead pins
    #[arg(long)]
    repair: bool,

    /// Hashing threads [default: one per core]
    #[arg(long, value_name = "N", default_value_t = 0)]
    threads: usize,

    /// Print one JSON object: {"clean","objects","bytes","entries","refs","threads","seconds","problems":[…]}
    #[arg(long)]
    json: bool,
}

pub fn run(ctx: &Context, args: Args) -> Result<(), Failure> {
    let store = ctx.open()?;
    let mut options = VerifyOptions::default();
    options.threads = args.threads;
    options.repair = if args.repair {
        RepairMode::Repair
    } else {
        RepairMode::ReportOnly
    };
    let line = ProgressLine::stderr();
    let started = Instant::now();
    let report = verify::verify(&store, options, &|p: VerifyProgress| {
        line.update(|| {
            format!(
                "verifying: {}/256 directories, {} objects, {} MiB",
                p.dirs_done,
                p.objects,
                p.bytes >> 20
            )
        })
    })?;
    line.finish();
    let seconds = started.elapsed().as_secs_f64();
    let remaining = report.damage_left().count();
    let unrepaired = report.unrepaired().count();
    let mut out = io::stdout().lock();
    if args.json {
        let problems = report
            .problems
            .iter()
            .map(|p| {
                Value::Obj(vec![
                    ("kind", p.kind.name().into()),
                    ("path", p.path.display().to_string().into()),
                    ("litter", Value::Bool(p.kind.is_litter())),
                    ("detail", p.detail.clone().into()),
                    ("repaired", p.repaired.clone().into()),
                ])
            })
            .collect();
        let value = Value::Obj(vec![
            ("clean", Value::Bool(remaining == 0)),
            ("objects", report.objects.into()),
            ("bytes", report.bytes.into()),
            ("entries", report.entries.into()),
            ("refs", report.refs.into()),
            ("threads", (report.threads as u64).into()),
            ("seconds", Value::Str(format!("{seconds:.3}"))),
            ("problems", Value::Arr(problems)),
        ]);
        print_line(&mut out, value.render())?;
    } else {
        for p in &report.problems {
            print_line(
                &mut out,
                format_args!("{}: {}: {}", p.kind.name(), p.path.display(), p.detail),
            )?;
            if let Some(repaired) = &p.repaired {
                print_line(&mut out, format_args!("  repaired: {repaired}"))?;
            }
        }
        let mib = report.bytes as f64 / (1 << 20) as f64;
        print_line(
            &mut out,
            format_args!(
                "checked {} objects ({mib:.1} MiB), {} entries and {} refs on {} threads in \
                 {seconds:.2} s ({:.0} MiB/s): {} problems, {} repaired",
                report.objects,
                report.entries,
                report.refs,
                report.threads,
                mib / seconds.max(1e-9),
                report.problems.len(),
                report.problems.len() - unrepaired
            ),
        )?;
    }
    out.flush().map_err(super::output_failure)?;
    if remaining > 0 {
        return Err(Failure::exit(EXIT_PROBLEMS));
    }
    Ok(())
}
