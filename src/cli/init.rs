//! `rask-store init`: create a store.

use std::io::{self, Write};

use super::{Context, Failure, print_line};

/// Create a store at --store (or RASK_STORE, or .rask-cache); an existing
/// store is left as it is.
#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(ctx: &Context, _args: Args) -> Result<(), Failure> {
    let existed = ctx.open().is_ok();
    let store = ctx.create()?;
    let root = std::path::absolute(store.root()).unwrap_or_else(|_| store.root().to_path_buf());
    let mut out = io::stdout().lock();
    let verb = if existed { "kept existing" } else { "created" };
    print_line(
        &mut out,
        format_args!("{verb} rask-store at {}", root.display()),
    )?;
    out.flush().map_err(super::output_failure)
}
