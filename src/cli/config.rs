//! `rask-store config`: show or change the store configuration.

use std::io::{self, Write};

use rask_store::config::{KEYS, StoreConfig};

use super::{Context, Failure, print_line};

/// With no KEY, list the configuration; with KEY, print its value (exit 1 if
/// unset); with KEY VALUE, set it; with --unset KEY, remove it. Values are
/// checked when set: sizes like 500M or 10G, durations like 30m, 2h, 7d.
///
/// Keys: gc.max-size, gc.max-age, gc.grace, gc.reflog-keep (the defaults of
/// `rask-store gc`); objects.pack-max (objects up to this size are appended
/// to pack files, larger ones written as loose files; 0 writes loose files
/// only).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Remove KEY from the configuration
    #[arg(long, requires = "key", conflicts_with = "value")]
    unset: bool,

    /// The key to show or change
    #[arg(value_name = "KEY")]
    key: Option<String>,

    /// The new value
    #[arg(value_name = "VALUE")]
    value: Option<String>,
}

pub fn run(ctx: &Context, args: Args) -> Result<(), Failure> {
    let store = ctx.open()?;
    let layout = store.layout();
    let mut config = StoreConfig::read(layout)?;
    let mut out = io::stdout().lock();
    match (args.key, args.value) {
        (None, _) => {
            for (key, value) in config.entries() {
                print_line(&mut out, format_args!("{key} = {value}"))?;
            }
            if config.entries().next().is_none() {
                print_line(&mut out, "# nothing set; keys:")?;
                for (key, what) in KEYS {
                    print_line(&mut out, format_args!("#   {key}: {what}"))?;
                }
            }
        }
        (Some(key), None) if args.unset => {
            if config.unset(&key) {
                config.write(layout)?;
            }
        }
        (Some(key), None) => match config.get(&key) {
            Some(value) => print_line(&mut out, value)?,
            None => return Err(Failure::silent()),
        },
        (Some(key), Some(value)) => {
            config.set(&key, &value)?;
            config.write(layout)?;
        }
    }
    out.flush().map_err(super::output_failure)
}
