//! `rask-store clean`: remove everything, or one namespace.

use std::io::{self, Write};

use rask_store::clean;
use rask_store::{Index, Namespace};

use super::json::Value;
use super::{Context, Failure, print_line};

/// Remove everything in the store — objects, index, refs, reflogs,
/// quarantine, statistics — or, with --namespace, one compiler's refs,
/// reflogs and index entries and every object nothing else reaches. What is
/// removed is deleted, not moved.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only this namespace (a compiler identity); other namespaces keep everything they reach
    #[arg(long, value_name = "NS")]
    namespace: Option<String>,

    /// Print one JSON object: {"refs","entries","objects","bytes"}
    #[arg(long)]
    json: bool,
}

pub fn run(ctx: &Context, args: Args) -> Result<(), Failure> {
    let namespace = args.namespace.as_deref().map(Namespace::new).transpose()?;
    let store = ctx.open()?;
    let report = match &namespace {
        Some(ns) => clean::clean_namespace(&store, &Index::open(&store)?, ns)?,
        None => clean::clean_all(&store)?,
    };
    store.flush()?;
    let mut out = io::stdout().lock();
    if args.json {
        let value = Value::Obj(vec![
            ("refs", report.refs.into()),
            ("entries", report.entries.into()),
            ("objects", report.objects.into()),
            ("bytes", report.bytes.into()),
            ("packs_in_use", report.packs_in_use.into()),
        ]);
        print_line(&mut out, value.render())?;
    } else {
        let scope =
            namespace.map_or_else(|| "the store".to_string(), |ns| format!("namespace {ns}"));
        print_line(
            &mut out,
            format_args!(
                "cleaned {scope}: deleted {} refs, {} index entries, {} objects ({} bytes)",
                report.refs, report.entries, report.objects, report.bytes
            ),
        )?;
        if report.packs_in_use > 0 {
            print_line(
                &mut out,
                format_args!(
                    "kept {} packs that running processes are still writing; run clean again \
                     after they exit",
                    report.packs_in_use
                ),
            )?;
        }
    }
    out.flush().map_err(super::output_failure)
}
