//! `rask-store get`: write an object's payload out, after checking it.

use std::io::{self, Write};
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
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut temp = tempfile::Builder::new()
        .prefix(".rask-store-get-")
        .tempfile_in(dir)
        .map_err(|e| {
            Failure::failed(format!(
                "could not create a temp file in {}: {e}",
                dir.display()
            ))
        })?;
    let mut writer = io::BufWriter::new(temp.as_file_mut());
    store.write_payload(id, &mut writer).map_err(|e| match e {
        rask_store::Error::Io {
            source, path: p, ..
        } if p.as_os_str() == "(output)" => {
            Failure::failed(format!("could not write {}: {source}", path.display()))
        }
        other => other.into(),
    })?;
    writer
        .flush()
        .map_err(|e| Failure::failed(format!("could not write {}: {e}", path.display())))?;
    drop(writer);
    temp.persist(path).map_err(|e| {
        Failure::failed(format!("could not create {}: {}", path.display(), e.error))
    })?;
    Ok(())
}
