//! `rask-store put`: store files or standard input as objects.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use rask_store::Kind;

use super::{Context, Failure, print_line};

/// Store each FILE (or standard input) as one object and print its id, one
/// per line in argument order. Large inputs are streamed in constant memory.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Kind of object: blob, ast, meta, instance or memo
    #[arg(long, default_value = "blob", value_parser = parse_data_kind)]
    kind: Kind,

    /// Id (or unique prefix) of an object this one references; repeat for
    /// several. Each must already exist.
    #[arg(long = "link", value_name = "ID")]
    links: Vec<String>,

    /// Files to store; none, or `-`, reads standard input
    #[arg(value_name = "FILE")]
    files: Vec<PathBuf>,
}

fn parse_data_kind(text: &str) -> Result<Kind, String> {
    let kind: Kind = text.parse()?;
    match kind {
        Kind::Entry | Kind::Root => Err(format!(
            "{kind} objects have a structure the store checks; they are written by the \
             library, not by `put`"
        )),
        _ => Ok(kind),
    }
}

pub fn run(ctx: &Context, args: Args) -> Result<(), Failure> {
    let store = ctx.open()?;
    let mut links = Vec::with_capacity(args.links.len());
    for text in &args.links {
        let id = Context::resolve_id(&store, text)?;
        if !store.contains_object(&id)? {
            return Err(Failure::failed(format!(
                "linked object {id} does not exist in {}; put it first",
                store.root().display()
            )));
        }
        links.push(id);
    }
    let mut files = args.files;
    if files.is_empty() {
        files.push(PathBuf::from("-"));
    }
    let mut out = io::stdout().lock();
    for file in &files {
        let id = if file == Path::new("-") {
            store.put_object_from_reader(args.kind, &links, io::stdin().lock())?
        } else {
            store.put_object_from_file(args.kind, &links, file)?
        };
        print_line(&mut out, id)?;
    }
    store.flush()?;
    out.flush().map_err(super::output_failure)
}
