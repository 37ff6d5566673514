//! `rask-store entry`: put, get and show keyed entries.
//!
//! Key components on the command line: `b3:<64 hex>` is a 32-byte hash,
//! `u:<decimal>` an unsigned integer, `x:<hex>` raw bytes, a lone `[` and
//! `]` open and close a nested list, `s:<text>` is the literal string
//! `<text>` (the escape for strings that look like the above), and anything
//! else is a string as written.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use rask_store::index::{Lookup, Miss, PartRef};
use rask_store::{Component, Entry, Index, Key, Kind, Namespace, Store};

use super::json::Value;
use super::{Context, Failure, print_line};

/// Put, get and show keyed entries (a composite key mapped to named parts)
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Store files as the parts of the entry for KEY and print the entry id
    Put(PutArgs),
    /// Write a part of the entry for KEY (or list its parts), after checking it
    Get(GetArgs),
    /// Describe the entry for KEY: decoded key, key hash, entry id, parts
    Show(ShowArgs),
    /// Print the key hash and canonical encoding of KEY (no store needed)
    Key(KeyArgs),
}

/// The key: a namespace and components.
#[derive(clap::Args, Debug)]
struct KeySpec {
    /// Namespace: the compiler identity (name, version, output-changing settings)
    #[arg(long, value_name = "NS")]
    ns: String,

    /// Key components: text, b3:<64 hex>, u:<n>, x:<hex>, `[` … `]` for a
    /// list, s:<text> for text that looks like one of those; put a component
    /// that starts with `-` after `--`
    #[arg(value_name = "KEY")]
    components: Vec<String>,
}

impl KeySpec {
    fn key(&self) -> Result<Key, Failure> {
        let ns = Namespace::new(&self.ns)?;
        Ok(Key::new(ns, Component::parse_args(&self.components)?)?)
    }
}

#[derive(clap::Args, Debug)]
struct PutArgs {
    #[command(flatten)]
    key: KeySpec,

    /// A part: its name and the file holding its bytes; repeat for several
    #[arg(long = "part", value_name = "NAME=FILE", required = true)]
    parts: Vec<String>,

    /// Kind of the part objects: blob, ast, meta, instance or memo
    #[arg(long, default_value = "blob")]
    kind: Kind,
}

#[derive(clap::Args, Debug)]
struct GetArgs {
    #[command(flatten)]
    key: KeySpec,

    /// The part to write; may be left out when the entry has one part
    #[arg(long = "part", value_name = "NAME")]
    part: Option<String>,

    /// Write the part to FILE instead of standard output
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct ShowArgs {
    #[command(flatten)]
    key: KeySpec,

    /// Print one JSON object: {"namespace","key","key_hash","entry_id","parts":[…]}
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
struct KeyArgs {
    #[command(flatten)]
    key: KeySpec,
}

pub fn run(ctx: &Context, args: Args) -> Result<(), Failure> {
    match args.command {
        Command::Put(a) => put(ctx, a),
        Command::Get(a) => get(ctx, a),
        Command::Show(a) => show(ctx, a),
        Command::Key(a) => key(a),
    }
}

fn miss_failure(miss: Miss) -> Failure {
    Failure::failed(format!("{} miss: {}", miss.cause.name(), miss.detail))
}

fn put(ctx: &Context, args: PutArgs) -> Result<(), Failure> {
    let key = args.key.key()?;
    if matches!(args.kind, Kind::Entry | Kind::Root) {
        return Err(Failure::failed(format!(
            "parts cannot be {} objects; use blob, ast, meta, instance or memo",
            args.kind
        )));
    }
    let mut files = Vec::with_capacity(args.parts.len());
    for spec in &args.parts {
        let Some((name, file)) = spec.split_once('=') else {
            return Err(Failure::failed(format!(
                "--part {spec:?} should be NAME=FILE"
            )));
        };
        files.push((name.to_string(), PathBuf::from(file)));
    }
    let store = ctx.open()?;
    let index = Index::open(&store)?;
    let mut parts = Vec::with_capacity(files.len());
    for (name, file) in files {
        let id = store.put_object_from_file(args.kind, &[], &file)?;
        let size = store.object_info(&id)?.payload_len;
        parts.push(PartRef { name, id, size });
    }
    store.flush()?;
    let outcome = index.put_entry(&store, &key, parts)?;
    index.flush()?;
    if let Some(e) = index.take_compaction_failure() {
        eprintln!(
            "rask-store: warning: the entry is stored, but compacting the index afterwards \
             failed: {e}; run `rask-store index compact` once that is fixed"
        );
    }
    let mut out = io::stdout().lock();
    print_line(&mut out, outcome.entry_id())?;
    out.flush().map_err(super::output_failure)
}

fn get(ctx: &Context, args: GetArgs) -> Result<(), Failure> {
    let key = args.key.key()?;
    let store = ctx.open()?;
    let index = Index::open(&store)?;
    let entry = match index.lookup(&key)? {
        Lookup::Hit(entry) => entry,
        Lookup::Miss(miss) => return Err(miss_failure(miss)),
    };
    let part = match (&args.part, entry.parts()) {
        (Some(name), _) => name.clone(),
        (None, [only]) => only.name.clone(),
        (None, parts) => {
            let mut out = io::stdout().lock();
            for p in parts {
                print_line(&mut out, format_args!("{}\t{}\t{}", p.name, p.id, p.size))?;
            }
            return out.flush().map_err(super::output_failure);
        }
    };
    match args.output {
        None => {
            let mut out = io::stdout().lock();
            write_part(&index, &store, &key, &part, &mut out)
        }
        Some(path) => write_to_file(&index, &store, &key, &part, &path),
    }
}

fn write_part(
    index: &Index,
    store: &Store,
    key: &Key,
    part: &str,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    match index.write_part(store, key, part, out)? {
        Lookup::Hit(_) => out.flush().map_err(super::output_failure),
        Lookup::Miss(miss) => Err(miss_failure(miss)),
    }
}

fn write_to_file(
    index: &Index,
    store: &Store,
    key: &Key,
    part: &str,
    path: &Path,
) -> Result<(), Failure> {
    super::write_file_atomically(path, |writer| write_part(index, store, key, part, writer))
}

fn show(ctx: &Context, args: ShowArgs) -> Result<(), Failure> {
    let key = args.key.key()?;
    let store = ctx.open()?;
    let index = Index::open(&store)?;
    let entry = match index.probe(&store, &key)? {
        Lookup::Hit(entry) => entry,
        Lookup::Miss(miss) => return Err(miss_failure(miss)),
    };
    let mut out = io::stdout().lock();
    if args.json {
        print_line(&mut out, entry_json(&key, &entry).render())?;
    } else {
        print_line(&mut out, format_args!("namespace  {}", key.namespace()))?;
        let components: Vec<String> = key.components().iter().map(|c| c.to_string()).collect();
        print_line(
            &mut out,
            format_args!("key        {}", components.join(" ")),
        )?;
        print_line(&mut out, format_args!("key hash   {}", key.hash()))?;
        print_line(&mut out, format_args!("entry id   {}", entry.id()))?;
        print_line(&mut out, format_args!("parts      {}", entry.parts().len()))?;
        for p in entry.parts() {
            print_line(
                &mut out,
                format_args!("  {}\t{}\t{} bytes", p.name, p.id, p.size),
            )?;
        }
    }
    out.flush().map_err(super::output_failure)
}

fn entry_json(key: &Key, entry: &Entry) -> Value {
    Value::Obj(vec![
        ("namespace", key.namespace().as_str().into()),
        (
            "key",
            Value::Arr(key.components().iter().map(component_json).collect()),
        ),
        ("key_hash", key.hash().to_hex().into()),
        ("entry_id", entry.id().to_hex().into()),
        (
            "parts",
            Value::Arr(
                entry
                    .parts()
                    .iter()
                    .map(|p| {
                        Value::Obj(vec![
                            ("name", p.name.as_str().into()),
                            ("id", p.id.to_hex().into()),
                            ("size", p.size.into()),
                        ])
                    })
                    .collect(),
            ),
        ),
    ])
}

/// A component as JSON: strings as strings, numbers as numbers, hashes as
/// `{"b3": hex}`, bytes as `{"x": hex}`, lists as arrays.
fn component_json(c: &Component) -> Value {
    match c {
        Component::Str(s) => s.as_str().into(),
        Component::U64(n) => (*n).into(),
        Component::Hash(h) => Value::Obj(vec![("b3", hex::encode(h).into())]),
        Component::Bytes(b) => Value::Obj(vec![("x", hex::encode(b).into())]),
        Component::List(items) => Value::Arr(items.iter().map(component_json).collect()),
        _ => Value::Str(c.to_string()),
    }
}

fn key(args: KeyArgs) -> Result<(), Failure> {
    let key = args.key.key()?;
    let mut out = io::stdout().lock();
    print_line(&mut out, format_args!("key hash   {}", key.hash()))?;
    print_line(
        &mut out,
        format_args!("encoding   {}", hex::encode(key.encoding())),
    )?;
    out.flush().map_err(super::output_failure)
}
