//! `rask-store exists`: check that objects exist.

use std::io::{self, Write};

use rask_store::{Error, IdSpec};

use super::{Context, Failure, print_line};

/// Exit 0 if every ID names an object in the store; otherwise print each
/// missing ID on its own line and exit 1. Only presence is checked (a
/// cheap lookup per id); `get` and `show` check the bytes.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Object ids: 64 hex digits, or unique prefixes of at least 8
    #[arg(value_name = "ID", required = true)]
    ids: Vec<String>,
}

pub fn run(ctx: &Context, args: Args) -> Result<(), Failure> {
    let specs = args
        .ids
        .iter()
        .map(|text| text.parse::<IdSpec>())
        .collect::<Result<Vec<_>, _>>()?;
    let store = ctx.open()?;
    let mut out = io::stdout().lock();
    let mut missing = 0usize;
    for (text, spec) in args.ids.iter().zip(&specs) {
        let present = match store.resolve(spec) {
            Ok(id) => store.contains_object(&id)?,
            Err(Error::PrefixNotFound { .. }) => false,
            Err(e) => return Err(e.into()),
        };
        if !present {
            missing += 1;
            print_line(&mut out, text)?;
        }
    }
    out.flush().map_err(super::output_failure)?;
    if missing > 0 {
        return Err(Failure::silent());
    }
    Ok(())
}
