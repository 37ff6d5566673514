//! `rask-store gc`: remove what no root needs.

use std::cell::Cell;
use std::io::{self, Write};
use std::time::Duration;

use rask_store::gc::{self, GcMode, GcPhase, GcPolicy, GcProgress};
use rask_store::{Index, Wait};

use super::json::Value;
use super::progress::ProgressLine;
use super::{Context, Failure, print_line};
use rask_store::config::{StoreConfig, parse_duration, parse_size};

/// Remove objects that no ref, recent reflog entry, running build's pin or
/// live index entry reaches and that are older than the grace period; with
/// --max-size / --max-age, first evict least-recently-used index entries that
/// no root needs. Index entries go before the objects they point to.
///
/// Safe beside running builds: gc waits for writers in flight, and never
/// removes an object younger than the grace period. Defaults for --grace,
/// --max-size, --max-age and --reflog-keep come from the store configuration
/// (`rask-store config`), then from the built-in defaults (1h, none, none, 1d).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Report what would be removed, and remove nothing
    #[arg(long)]
    dry_run: bool,

    /// Keep unreachable objects younger than this (e.g. 30m, 2h, 1d) [default: gc.grace, else 1h]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    grace: Option<Duration>,

    /// Allow a grace period under one minute; only safe when no build is running
    #[arg(long)]
    force: bool,

    /// Evict least-recently-used entries until objects total at most SIZE (e.g. 500M, 10G) [default: gc.max-size]
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_size: Option<u64>,

    /// Evict entries not used for this long (e.g. 30d) [default: gc.max-age]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    max_age: Option<Duration>,

    /// Reflog entries newer than this keep what they name [default: gc.reflog-keep, else 1d]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    reflog_keep: Option<Duration>,

    /// Fail at once if writers hold the store, instead of waiting for them
    #[arg(long)]
    no_wait: bool,

    /// Print one JSON object with what was kept, removed and reclaimed
    #[arg(long)]
    json: bool,
}

pub fn run(ctx: &Context, args: Args) -> Result<(), Failure> {
    let store = ctx.open()?;
    let config = StoreConfig::read(store.layout())?;
    let mut policy = GcPolicy::default();
    policy.objects.mode = if args.dry_run {
        GcMode::DryRun
    } else {
        GcMode::Delete
    };
    policy.objects.grace = args
        .grace
        .or_else(|| config.duration("gc.grace"))
        .unwrap_or(policy.objects.grace);
    policy.max_size = args.max_size.or_else(|| config.size("gc.max-size"));
    policy.max_age = args.max_age.or_else(|| config.duration("gc.max-age"));
    policy.reflog_keep = args
        .reflog_keep
        .or_else(|| config.duration("gc.reflog-keep"))
        .unwrap_or(policy.reflog_keep);
    if policy.objects.grace < Duration::from_secs(60) && !args.force {
        return Err(Failure::usage(format!(
            "a grace period of {}s would remove objects that running builds may be about to \
             use; add --force if no build is running",
            policy.objects.grace.as_secs()
        )));
    }
    let index = Index::open(&store)?;
    policy.wait = if args.no_wait {
        Wait::NoWait
    } else {
        Wait::Block
    };
    let line = ProgressLine::stderr();
    let phase = Cell::new(None);
    let report = gc::collect(&store, &index, policy, &|p: GcProgress| {
        if phase.replace(Some(p.phase)) == Some(p.phase) {
            line.update(|| describe(&p));
        } else {
            line.show(|| describe(&p));
        }
    })?;
    line.finish();
    store.flush()?;
    let o = &report.objects;
    let mut out = io::stdout().lock();
    if args.json {
        let value = Value::Obj(vec![
            ("dry_run", Value::Bool(o.dry_run)),
            ("roots_refs", (report.roots.refs as u64).into()),
            ("roots_pins", (report.roots.pins as u64).into()),
            (
                "roots_entry_parts",
                (report.roots.entry_parts as u64).into(),
            ),
            ("entries_kept", report.entries_kept.into()),
            ("entries_removed", report.entries_evicted.into()),
            ("objects_examined", o.examined.into()),
            ("objects_reachable", o.reachable.into()),
            ("objects_kept_young", o.kept_young.into()),
            ("objects_removed", o.removed_objects.into()),
            ("bytes_removed", o.removed_bytes.into()),
            ("bytes_kept", o.kept_bytes.into()),
            ("temp_files_removed", o.removed_temp_files.into()),
            ("packs_rewritten", o.rewritten_packs.into()),
            ("packs_written", o.written_packs.into()),
            ("within_cap", Value::Bool(report.within_cap)),
        ]);
        print_line(&mut out, value.render())?;
    } else {
        let verb = if o.dry_run { "would remove" } else { "removed" };
        print_line(
            &mut out,
            format_args!(
                "roots: {} ids from refs and recent reflogs, {} pinned ids, {} entries ({} parts)",
                report.roots.refs, report.roots.pins, report.entries_kept, report.roots.entry_parts
            ),
        )?;
        print_line(
            &mut out,
            format_args!(
                "kept {} objects ({} reachable, {} younger than the grace period), {} bytes",
                o.examined.saturating_sub(o.removed_objects),
                o.reachable.min(o.examined),
                o.kept_young,
                o.kept_bytes
            ),
        )?;
        print_line(
            &mut out,
            format_args!(
                "{verb} {} index entries, {} objects ({} bytes), {} stale temp files",
                report.entries_evicted, o.removed_objects, o.removed_bytes, o.removed_temp_files
            ),
        )?;
        if o.rewritten_packs > 0 {
            let verb = if o.dry_run {
                "would rewrite"
            } else {
                "rewrote"
            };
            print_line(
                &mut out,
                format_args!(
                    "{verb} {} packs into {} without their unreachable objects",
                    o.rewritten_packs, o.written_packs
                ),
            )?;
        }
        if !report.within_cap {
            print_line(
                &mut out,
                "the size cap is not met: what is left is reachable from roots or younger than the grace period",
            )?;
        }
    }
    out.flush().map_err(super::output_failure)
}

/// The progress line for one report.
fn describe(p: &GcProgress) -> String {
    match p.phase {
        GcPhase::Measuring => format!("gc: measuring objects: {}/256 directories", p.dirs_done),
        GcPhase::Marking => format!("gc: marking: {} objects reached from the roots", p.marked),
        GcPhase::Evicting => format!(
            "gc: evicting: {}/{} index entries removed",
            p.entries_done, p.entries_total
        ),
        GcPhase::Compacting => format!(
            "gc: compacting the index without the evicted entries: {}/{} records merged",
            p.records_done, p.records_total
        ),
        GcPhase::Sweeping => format!(
            "gc: sweeping: {}/256 directories, {} objects removed",
            p.dirs_done, p.removed
        ),
        _ => "gc: working".into(),
    }
}
