//! `rask-store stats`: hits, misses and size, from the statistics journal.

use std::io::{self, Write};

use super::json::Value;
use super::{Context, Failure, print_line};

/// Show cache hits and misses per namespace and tier (misses split by cause:
/// absent, corrupt, dangling), puts, store size by object kind, and the last
/// gc. Reads the statistics journal only; never walks the objects.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print one JSON object: {"tiers":[…],"kinds":[…],"last_gc":…,"bad_lines":N}
    #[arg(long)]
    json: bool,
}

pub fn run(ctx: &Context, args: Args) -> Result<(), Failure> {
    let store = ctx.open()?;
    let report = store.stats()?;
    let mut out = io::stdout().lock();
    if args.json {
        let tiers = report
            .tiers
            .iter()
            .map(|((ns, tier), c)| {
                Value::Obj(vec![
                    ("namespace", ns.clone().into()),
                    ("tier", tier.clone().into()),
                    ("hits", c.hits.into()),
                    ("misses", c.misses().into()),
                    ("absent", c.absent.into()),
                    ("corrupt", c.corrupt.into()),
                    ("dangling", c.dangling.into()),
                    ("puts", c.puts.into()),
                    ("put_bytes", c.put_bytes.into()),
                ])
            })
            .collect();
        let kinds = report
            .kinds
            .iter()
            .map(|(kind, size)| {
                Value::Obj(vec![
                    ("kind", kind.name().into()),
                    ("objects", (size.objects.max(0) as u64).into()),
                    ("bytes", (size.bytes.max(0) as u64).into()),
                ])
            })
            .collect();
        let last_gc = report.last_gc.map(|gc| {
            Value::Obj(vec![
                ("time", gc.time.into()),
                ("objects", gc.objects.into()),
                ("bytes", gc.bytes.into()),
                ("entries", gc.entries.into()),
            ])
        });
        let value = Value::Obj(vec![
            ("tiers", Value::Arr(tiers)),
            ("kinds", Value::Arr(kinds)),
            ("last_gc", last_gc.into()),
            ("bad_lines", report.bad_lines.into()),
        ]);
        print_line(&mut out, value.render())?;
        return out.flush().map_err(super::output_failure);
    }
    print_line(&mut out, format_args!("store {}", store.root().display()))?;
    if report.tiers.is_empty() {
        print_line(&mut out, "no lookups recorded yet")?;
    } else {
        print_line(
            &mut out,
            format_args!(
                "{:<24} {:<10} {:>10} {:>10} {:>7} {:>8} {:>8} {:>8} {:>10}",
                "namespace",
                "tier",
                "hits",
                "misses",
                "hit %",
                "absent",
                "corrupt",
                "dangling",
                "puts"
            ),
        )?;
        for ((ns, tier), c) in &report.tiers {
            let lookups = c.hits + c.misses();
            let rate = if lookups == 0 {
                "-".to_string()
            } else {
                format!("{:.1}", 100.0 * c.hits as f64 / lookups as f64)
            };
            print_line(
                &mut out,
                format_args!(
                    "{ns:<24} {tier:<10} {:>10} {:>10} {rate:>7} {:>8} {:>8} {:>8} {:>10}",
                    c.hits,
                    c.misses(),
                    c.absent,
                    c.corrupt,
                    c.dangling,
                    c.puts
                ),
            )?;
        }
    }
    print_line(&mut out, "")?;
    print_line(
        &mut out,
        format_args!("{:<10} {:>10} {:>14}", "kind", "objects", "bytes"),
    )?;
    let (mut objects, mut bytes) = (0i64, 0i64);
    for (kind, size) in &report.kinds {
        objects += size.objects;
        bytes += size.bytes;
        print_line(
            &mut out,
            format_args!(
                "{:<10} {:>10} {:>14}",
                kind.name(),
                size.objects,
                size.bytes
            ),
        )?;
    }
    print_line(
        &mut out,
        format_args!("{:<10} {objects:>10} {bytes:>14}", "total"),
    )?;
    match report.last_gc {
        Some(gc) => print_line(
            &mut out,
            format_args!(
                "\nlast gc at unix time {}: removed {} objects and {} entries, reclaimed {} bytes",
                gc.time, gc.objects, gc.entries, gc.bytes
            ),
        )?,
        None => print_line(&mut out, "\nno gc has run")?,
    }
    if report.bad_lines > 0 {
        print_line(
            &mut out,
            format_args!(
                "{} damaged lines in the statistics journal were skipped",
                report.bad_lines
            ),
        )?;
    }
    out.flush().map_err(super::output_failure)
}
