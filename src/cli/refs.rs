//! `rask-store ref`: read, compare-and-swap, delete, list and log refs.

use std::io::{self, Write};

use clap::Subcommand;
use rask_store::refs::ABSENT_HEX;
use rask_store::{Expect, Namespace, ObjectId, PackageName, Store};

use super::json::Value;
use super::{Context, Failure, print_line};

/// Per-package refs: `refs/<namespace>/<package>` holds the id of the
/// package's current metadata root. Updates are compare-and-swap; every
/// update is recorded in the ref's reflog. A lost compare-and-swap exits 1
/// and names the ref's current value.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: RefCommand,
}

#[derive(Subcommand, Debug)]
enum RefCommand {
    /// Print a ref's value (exit 1 if the ref does not exist)
    Get(GetArgs),
    /// Set a ref, optionally only if it holds an expected value
    Set(SetArgs),
    /// Delete a ref, optionally only if it holds an expected value
    Delete(DeleteArgs),
    /// List the refs of a namespace (or of every namespace)
    List(ListArgs),
    /// Print a ref's reflog, oldest first
    Log(LogArgs),
}

fn parse_namespace(text: &str) -> Result<Namespace, String> {
    Namespace::new(text).map_err(|e| e.to_string())
}

fn parse_package(text: &str) -> Result<PackageName, String> {
    PackageName::new(text).map_err(|e| e.to_string())
}

fn parse_full_id(text: &str) -> Result<ObjectId, String> {
    ObjectId::from_hex(text).map_err(|e| e.to_string())
}

#[derive(clap::Args, Debug)]
struct RefName {
    /// Namespace (compiler identity): 1-128 ASCII letters, digits or . _ - + @ =, not starting with a dot
    #[arg(long = "ns", value_name = "NS", value_parser = parse_namespace)]
    namespace: Namespace,

    /// Package name: same rules as the namespace
    #[arg(value_name = "PACKAGE", value_parser = parse_package)]
    package: PackageName,
}

impl RefName {
    fn display(&self) -> String {
        format!("{}/{}", self.namespace, self.package)
    }
}

#[derive(clap::Args, Debug)]
struct GetArgs {
    #[command(flatten)]
    name: RefName,

    /// Print {"namespace","package","id"}
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
struct SetArgs {
    #[command(flatten)]
    name: RefName,

    /// The new value: an object id (64 hex digits, or a unique prefix of at
    /// least 8); the object must exist
    #[arg(value_name = "ID")]
    id: String,

    /// Only update if the ref now holds OLD (64 hex digits)
    #[arg(long, value_name = "OLD", value_parser = parse_full_id, conflicts_with = "expect_none")]
    expect: Option<ObjectId>,

    /// Only update if the ref does not exist yet
    #[arg(long)]
    expect_none: bool,

    /// Reflog message
    #[arg(
        short = 'm',
        long = "message",
        default_value = "set with rask-store ref set"
    )]
    message: String,
}

#[derive(clap::Args, Debug)]
struct DeleteArgs {
    #[command(flatten)]
    name: RefName,

    /// Only delete if the ref now holds OLD (64 hex digits)
    #[arg(long, value_name = "OLD", value_parser = parse_full_id)]
    expect: Option<ObjectId>,

    /// Reflog message
    #[arg(
        short = 'm',
        long = "message",
        default_value = "deleted with rask-store ref delete"
    )]
    message: String,
}

#[derive(clap::Args, Debug)]
struct ListArgs {
    /// Only this namespace [default: every namespace]
    #[arg(long = "ns", value_name = "NS", value_parser = parse_namespace)]
    namespace: Option<Namespace>,

    /// Print one JSON array of {"namespace","package","id"}
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
struct LogArgs {
    #[command(flatten)]
    name: RefName,

    /// Print {"entries":[{"old","new","time","message"}],"damaged":[{"line","reason"}]};
    /// absent values are 64 zeros
    #[arg(long)]
    json: bool,
}

pub fn run(ctx: &Context, args: Args) -> Result<(), Failure> {
    let store = ctx.open()?;
    let mut out = io::stdout().lock();
    match args.command {
        RefCommand::Get(args) => get(&store, args, &mut out)?,
        RefCommand::Set(args) => set(&store, args, &mut out)?,
        RefCommand::Delete(args) => delete(&store, args, &mut out)?,
        RefCommand::List(args) => list(&store, args, &mut out)?,
        RefCommand::Log(args) => log(&store, args, &mut out)?,
    }
    out.flush().map_err(super::output_failure)
}

fn get(store: &Store, args: GetArgs, out: &mut impl Write) -> Result<(), Failure> {
    let name = &args.name;
    let Some(id) = store.read_ref(&name.namespace, &name.package)? else {
        return Err(Failure::failed(format!(
            "ref {} does not exist",
            name.display()
        )));
    };
    if args.json {
        let value = Value::Obj(vec![
            ("namespace", name.namespace.as_str().into()),
            ("package", name.package.as_str().into()),
            ("id", id.to_hex().into()),
        ]);
        print_line(out, value.render())
    } else {
        print_line(out, id)
    }
}

fn set(store: &Store, args: SetArgs, out: &mut impl Write) -> Result<(), Failure> {
    let name = &args.name;
    let id = Context::resolve_id(store, &args.id)?;
    if !store.contains_object(&id)? {
        return Err(Failure::failed(format!(
            "object {id} does not exist in {}; put it before pointing a ref at it",
            store.root().display()
        )));
    }
    let expect = match (args.expect, args.expect_none) {
        (Some(old), _) => Expect::Value(old),
        (None, true) => Expect::Absent,
        (None, false) => Expect::Any,
    };
    let old = store.update_ref(&name.namespace, &name.package, expect, id, &args.message)?;
    print_line(
        out,
        format_args!("{}: {} -> {id}", name.display(), show(old)),
    )
}

fn delete(store: &Store, args: DeleteArgs, out: &mut impl Write) -> Result<(), Failure> {
    let name = &args.name;
    let expect = args.expect.map_or(Expect::Any, Expect::Value);
    match store.delete_ref(&name.namespace, &name.package, expect, &args.message)? {
        Some(old) => print_line(out, format_args!("deleted {} (was {old})", name.display())),
        None => print_line(
            out,
            format_args!("{} did not exist; nothing deleted", name.display()),
        ),
    }
}

fn list(store: &Store, args: ListArgs, out: &mut impl Write) -> Result<(), Failure> {
    let namespaces = match args.namespace {
        Some(ns) => vec![ns],
        None => store.list_namespaces()?,
    };
    let mut items = Vec::new();
    for ns in &namespaces {
        for (pkg, id) in store.list_refs(ns)? {
            if args.json {
                items.push(Value::Obj(vec![
                    ("namespace", ns.as_str().into()),
                    ("package", pkg.as_str().into()),
                    ("id", id.to_hex().into()),
                ]));
            } else {
                print_line(out, format_args!("{id} {ns}/{pkg}"))?;
            }
        }
    }
    if args.json {
        print_line(out, Value::Arr(items).render())?;
    }
    Ok(())
}

fn log(store: &Store, args: LogArgs, out: &mut impl Write) -> Result<(), Failure> {
    let name = &args.name;
    let reflog = store.reflog(&name.namespace, &name.package)?;
    for damaged in &reflog.damaged {
        eprintln!(
            "rask-store: warning: {} line {}: {}",
            reflog.path.display(),
            damaged.line,
            damaged.reason
        );
    }
    if args.json {
        let entries = reflog
            .entries
            .iter()
            .map(|e| {
                Value::Obj(vec![
                    ("old", hex_or_zeros(e.old).into()),
                    ("new", hex_or_zeros(e.new).into()),
                    ("time", e.time.into()),
                    ("message", e.message.as_str().into()),
                ])
            })
            .collect();
        let damaged = reflog
            .damaged
            .iter()
            .map(|d| {
                Value::Obj(vec![
                    ("line", (d.line as u64).into()),
                    ("reason", d.reason.as_str().into()),
                ])
            })
            .collect();
        let value = Value::Obj(vec![
            ("entries", Value::Arr(entries)),
            ("damaged", Value::Arr(damaged)),
        ]);
        return print_line(out, value.render());
    }
    for e in &reflog.entries {
        print_line(
            out,
            format_args!(
                "{} {} {} {}",
                hex_or_zeros(e.old),
                hex_or_zeros(e.new),
                e.time,
                e.message
            ),
        )?;
    }
    Ok(())
}

fn show(value: Option<ObjectId>) -> String {
    value.map_or_else(|| "(absent)".to_string(), |id| id.to_hex())
}

fn hex_or_zeros(value: Option<ObjectId>) -> String {
    value.map_or_else(|| ABSENT_HEX.to_string(), |id| id.to_hex())
}
