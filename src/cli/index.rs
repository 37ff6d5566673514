//! `rask-store index`: statistics and compaction of the keyed-entry index.

use std::io::{self, Write};

use rask_store::Index;
use rask_store::index::{CompactProgress, IndexStats};

use super::json::Value;
use super::progress::ProgressLine;
use super::{Context, Failure, print_line};

/// Inspect and compact the keyed-entry index
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Entries, segment files, journal size and records, and any damage found
    Stats(StatsArgs),
    /// Merge the journal and all segments into one new segment (progress is
    /// shown on standard error when it is a terminal); unreadable index files
    /// are moved to quarantine/
    Compact(CompactArgs),
}

#[derive(clap::Args, Debug)]
struct StatsArgs {
    /// Print one JSON object
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
struct CompactArgs {}

pub fn run(ctx: &Context, args: Args) -> Result<(), Failure> {
    let store = ctx.open()?;
    let index = Index::open(&store)?;
    let mut out = io::stdout().lock();
    match args.command {
        Command::Stats(a) => {
            let stats = index.stats()?;
            if a.json {
                print_line(&mut out, stats_json(&stats).render())?;
            } else {
                print_stats(&mut out, &stats)?;
            }
        }
        Command::Compact(CompactArgs {}) => {
            let line = ProgressLine::stderr();
            let report = index.compact_with_progress(&|p: CompactProgress| {
                let text = || {
                    format!(
                        "index compact: {}/{} records merged",
                        p.records_done, p.records_total
                    )
                };
                if p.records_done == 0 || p.records_done == p.records_total {
                    line.show(text);
                } else {
                    line.update(text);
                }
            });
            line.finish();
            let report = report?;
            print_line(
                &mut out,
                format_args!(
                    "compacted {} segment(s) and {} journal record(s) into generation {}: \
                     {} entries",
                    report.merged_segments,
                    report.journal_records,
                    report.generation,
                    report.entries
                ),
            )?;
            if report.dropped_damaged > 0 {
                print_line(
                    &mut out,
                    format_args!("dropped {} damaged record(s)", report.dropped_damaged),
                )?;
            }
            for path in &report.quarantined {
                print_line(
                    &mut out,
                    format_args!("quarantined unreadable index file as {}", path.display()),
                )?;
            }
        }
    }
    out.flush().map_err(super::output_failure)
}

fn print_stats(out: &mut impl Write, s: &IndexStats) -> Result<(), Failure> {
    print_line(out, format_args!("generation       {}", s.generation))?;
    print_line(out, format_args!("entries          {}", s.entries))?;
    print_line(out, format_args!("segments         {}", s.segments.len()))?;
    for seg in &s.segments {
        print_line(
            out,
            format_args!(
                "  {}  {} entries, {} bytes",
                seg.path.display(),
                seg.entries,
                seg.bytes
            ),
        )?;
    }
    print_line(
        out,
        format_args!("journal          {}", s.journal_path.display()),
    )?;
    print_line(out, format_args!("journal bytes    {}", s.journal_bytes))?;
    print_line(out, format_args!("journal records  {}", s.journal_records))?;
    if let Some((offset, len)) = s.torn_tail {
        print_line(
            out,
            format_args!("torn tail        {len} bytes at offset {offset} (ignored)"),
        )?;
    }
    for skip in &s.skipped {
        print_line(
            out,
            format_args!(
                "skipped          {} bytes at offset {}: {}",
                skip.len, skip.offset, skip.reason
            ),
        )?;
    }
    for p in &s.problems {
        print_line(
            out,
            format_args!("problem          {}: {}", p.path.display(), p.message),
        )?;
    }
    Ok(())
}

fn stats_json(s: &IndexStats) -> Value {
    Value::Obj(vec![
        ("generation", s.generation.into()),
        ("entries", s.entries.into()),
        (
            "segments",
            Value::Arr(
                s.segments
                    .iter()
                    .map(|seg| {
                        Value::Obj(vec![
                            ("path", seg.path.display().to_string().into()),
                            ("entries", seg.entries.into()),
                            ("bytes", seg.bytes.into()),
                        ])
                    })
                    .collect(),
            ),
        ),
        ("journal", journal_json(s)),
        (
            "problems",
            Value::Arr(
                s.problems
                    .iter()
                    .map(|p| {
                        Value::Obj(vec![
                            ("path", p.path.display().to_string().into()),
                            ("message", p.message.as_str().into()),
                        ])
                    })
                    .collect(),
            ),
        ),
    ])
}

/// The journal as JSON; `torn_tail` is present only when there is one.
fn journal_json(s: &IndexStats) -> Value {
    let mut fields = vec![
        ("path", s.journal_path.display().to_string().into()),
        ("bytes", s.journal_bytes.into()),
        ("records", s.journal_records.into()),
    ];
    if let Some((offset, len)) = s.torn_tail {
        fields.push((
            "torn_tail",
            Value::Obj(vec![("offset", offset.into()), ("bytes", len.into())]),
        ));
    }
    fields.push((
        "skipped",
        Value::Arr(
            s.skipped
                .iter()
                .map(|k| {
                    Value::Obj(vec![
                        ("offset", k.offset.into()),
                        ("bytes", k.len.into()),
                        ("reason", k.reason.as_str().into()),
                    ])
                })
                .collect(),
        ),
    ));
    Value::Obj(fields)
}
