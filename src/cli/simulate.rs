//! `rask-store simulate`: a compiler's builds, end to end.

use std::io::{self, Write};

use rask_store::Store;
use rask_store::simulate::concurrent::{self, BuilderRole};
use rask_store::simulate::scenario::{self, SimulateOptions};
use rask_store::simulate::workspace::Scale;

use super::json::Value;
use super::progress::ProgressLine;
use super::{Context, Failure, print_line};

/// Generate a synthetic workspace shaped like real code (packages in a DAG,
/// call graphs with recursive groups, generic functions instantiated at call
/// sites, long-tailed AST sizes) and build it again and again through the
/// compiler layer and a real store: cold build, no-op rebuild, cosmetic edit,
/// leaf body edit, edit in a recursive group, type definition edit, upstream
/// signature change, compiler upgrade with gc of the old namespace, two
/// compilers alternating, a JIT session, and three builder processes (a
/// build, a test run, an editor's checker) on the store at once while gc
/// runs, then verify. Each scenario's outcome is
/// checked against what the semantic-hash caching design says must happen;
/// the command exits 1 if any differs.
///
/// Uses a temporary store unless --store or RASK_STORE names one.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Workspace size: S (2 packages, 700 functions), M (50, 5,000), L (500, 100,000)
    #[arg(long, default_value = "S", value_parser = parse_scale)]
    scale: Scale,

    /// Seed of the generated workspace
    #[arg(long, default_value_t = 1)]
    seed: u64,

    /// Expressions in the JIT scenario
    #[arg(long, default_value_t = 500)]
    jit_entries: usize,

    /// Print one JSON object per scenario, one per line
    #[arg(long)]
    json: bool,

    /// Reload N JIT entries from --store and print how many came back intact
    /// (the second process of the JIT scenario)
    #[arg(long, value_name = "N", hide = true)]
    jit_reload_child: Option<usize>,

    /// Run one builder of the concurrency scenario on --store (build, test
    /// or check) and print its one-line report
    #[arg(long, value_name = "ROLE", hide = true)]
    concurrent_builder: Option<BuilderRole>,
}

fn parse_scale(text: &str) -> Result<Scale, String> {
    text.parse()
}

fn scale_name(scale: Scale) -> &'static str {
    match scale {
        Scale::S => "S",
        Scale::M => "M",
        Scale::L => "L",
    }
}

pub fn run(ctx: &Context, args: Args) -> Result<(), Failure> {
    if let Some(n) = args.jit_reload_child {
        let store = ctx.open()?;
        let hits = scenario::jit_reload(&store, n)?;
        let mut out = io::stdout().lock();
        print_line(&mut out, hits)?;
        return out.flush().map_err(super::output_failure);
    }
    let options = SimulateOptions {
        scale: args.scale,
        seed: args.seed,
        jit_entries: args.jit_entries,
    };
    if let Some(role) = args.concurrent_builder {
        let store = ctx.open()?;
        let line = concurrent::concurrent_builder(&store, options, role)?;
        store.flush()?;
        let mut out = io::stdout().lock();
        print_line(&mut out, line)?;
        return out.flush().map_err(super::output_failure);
    }
    let temp;
    let store = if ctx.store_named() {
        ctx.create()?
    } else {
        temp = tempfile::Builder::new()
            .prefix("rask-simulate-")
            .tempdir()
            .map_err(|e| Failure::failed(format!("could not create a temporary store: {e}")))?;
        Store::create(temp.path().join("store"), ctx.options())?
    };
    let line = ProgressLine::stderr();
    let results = scenario::run(
        &store,
        options,
        &reload_in_child,
        &launch_builder,
        &|name| line.update(|| format!("simulate: {name}…")),
    )?;
    line.finish();
    let mut out = io::stdout().lock();
    let mut failed = 0;
    if !args.json {
        print_line(
            &mut out,
            format_args!(
                "{:<44} {:>8} {:>8} {:>8} {:>7} {:>11} {:>9} {:>9}  {}",
                "scenario", "lookups", "hits", "misses", "puts", "bytes", "ms", "store ms", "check"
            ),
        )?;
    }
    for r in &results {
        let o = &r.outcome;
        let hits = o.parse.hits + o.function.hits + o.instance.hits + o.comptime.hits;
        if !r.ok {
            failed += 1;
        }
        if args.json {
            let value = Value::Obj(vec![
                ("scenario", r.name.into()),
                ("ok", Value::Bool(r.ok)),
                ("lookups", o.lookups().into()),
                ("hits", hits.into()),
                ("misses", o.misses().into()),
                ("parse_misses", o.parse.misses.into()),
                ("function_misses", o.function.misses.into()),
                ("instance_misses", o.instance.misses.into()),
                ("comptime_misses", o.comptime.misses.into()),
                ("packages_built", (o.built as u64).into()),
                ("packages_skipped", (o.skipped as u64).into()),
                ("puts", o.puts.into()),
                ("bytes_written", o.bytes_written.into()),
                ("wall_ms", (o.wall.as_millis() as u64).into()),
                ("store_ms", (o.store.as_millis() as u64).into()),
                ("expected", r.expected.clone().into()),
                ("measured", r.measured.clone().into()),
            ]);
            print_line(&mut out, value.render())?;
        } else {
            print_line(
                &mut out,
                format_args!(
                    "{:<44} {:>8} {:>8} {:>8} {:>7} {:>11} {:>9.1} {:>9.1}  {}",
                    r.name,
                    o.lookups(),
                    hits,
                    o.misses(),
                    o.puts,
                    o.bytes_written,
                    o.wall.as_secs_f64() * 1000.0,
                    o.store.as_secs_f64() * 1000.0,
                    if r.ok { "ok" } else { "MISMATCH" }
                ),
            )?;
            print_line(&mut out, format_args!("    expected: {}", r.expected))?;
            print_line(&mut out, format_args!("    measured: {}", r.measured))?;
        }
    }
    if !args.json {
        print_line(
            &mut out,
            format_args!(
                "{} of {} scenarios matched the design",
                results.len() - failed,
                results.len()
            ),
        )?;
    }
    out.flush().map_err(super::output_failure)?;
    if failed > 0 {
        return Err(Failure::failed(format!(
            "{failed} scenarios did not behave as the semantic-hash caching design requires"
        )));
    }
    Ok(())
}

/// Runs the JIT scenario's reload in a second `rask-store` process.
fn reload_in_child(store: &Store, entries: usize) -> rask_store::Result<usize> {
    let exe = std::env::current_exe().map_err(|e| rask_store::Error::Io {
        action: "find",
        path: "rask-store".into(),
        source: e,
    })?;
    let out = std::process::Command::new(&exe)
        .arg("--store")
        .arg(store.root())
        .args(["simulate", "--jit-reload-child", &entries.to_string()])
        .output()
        .map_err(|e| rask_store::Error::Io {
            action: "run",
            path: exe.clone(),
            source: e,
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim().parse().map_err(|_| rask_store::Error::Io {
        action: "read the answer of",
        path: exe,
        source: io::Error::other(format!(
            "the reload process printed {:?} and {:?}",
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    })
}

/// Starts one builder of the concurrency scenario in its own `rask-store`
/// process; the returned function waits for it and returns its report line.
fn launch_builder(
    store: &Store,
    role: BuilderRole,
    options: SimulateOptions,
) -> rask_store::Result<Box<dyn FnOnce() -> rask_store::Result<String>>> {
    let exe = std::env::current_exe().map_err(|e| rask_store::Error::Io {
        action: "find",
        path: "rask-store".into(),
        source: e,
    })?;
    let child = std::process::Command::new(&exe)
        .arg("--store")
        .arg(store.root())
        .args([
            "simulate",
            "--scale",
            scale_name(options.scale),
            "--seed",
            &options.seed.to_string(),
            "--concurrent-builder",
            role.name(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| rask_store::Error::Io {
            action: "run",
            path: exe.clone(),
            source: e,
        })?;
    Ok(Box::new(move || {
        let out = child
            .wait_with_output()
            .map_err(|e| rask_store::Error::Io {
                action: "wait for",
                path: exe.clone(),
                source: e,
            })?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && !text.is_empty() {
            return Ok(text);
        }
        Err(rask_store::Error::Io {
            action: "read the answer of",
            path: exe,
            source: io::Error::other(format!(
                "the {} builder exited with {} and printed {:?} and {:?}",
                role.name(),
                out.status,
                text,
                String::from_utf8_lossy(&out.stderr).trim()
            )),
        })
    }))
}
