//! `rask-store get`: write an object's payload out, after checking it.

use std::io;
use std::path::{Path, PathBuf};

use super::{Context, Failure};

/// Write the payload of object ID to standard output, or to FILE with -o.
/// The object is checked against its id first: a damaged object writes
/// nothing and exits 1. With -o, FILE appears only once it is complete.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Object id: 64 hex digits, or a unique prefix of at least 8
    #[arg(value_name = "ID")]
    id: String,

    /// Write the payload to FILE instead of standard output
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
}

pub fn run(ctx: &Context, args: Args) -> Result<(), Failure> {
    let store = ctx.open()?;
    let id = Context::resolve_id(&store, &args.id)?;
    match args.output {
        None => {
            let mut out = io::stdout().lock();
            store.write_payload(&id, &mut out)?;
            Ok(())
        }
        Some(path) => write_to_file(&store, &id, &path),
    }
}

fn write_to_file(
    store: &rask_store::Store,
    id: &rask_store::ObjectId,
    path: &Path,
) -> Result<(), Failure> {
    super::write_file_atomically(path, |writer| {
        store.write_payload(id, writer).map_err(|e| match e {
            rask_store::Error::Io {
                source, path: p, ..
            } if p.as_os_str() == "(output)" => {
                Failure::failed(format!("could not write {}: {source}", path.display()))
            }
            other => other.into(),
        })?;
        Ok(())
    })
}
