//! `rask-store show`: describe an object.

use std::io::{self, Write};

use super::json::Value;
use super::{Context, Failure, print_line};

/// Describe object ID: its kind, payload size, links and where it is on
/// disk (its file, or its pack and the offset in it). The object is checked
/// against its id first.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Object id: 64 hex digits, or a unique prefix of at least 8
    #[arg(value_name = "ID")]
    id: String,

    /// Print one JSON object: {"id","kind","size","links":[…],"path","offset"}
    /// (offset: where a packed object starts in its pack; null for a loose file)
    #[arg(long)]
    json: bool,
}

pub fn run(ctx: &Context, args: Args) -> Result<(), Failure> {
    let store = ctx.open()?;
    let id = Context::resolve_id(&store, &args.id)?;
    let info = store.object_info(&id)?;
    let mut out = io::stdout().lock();
    if args.json {
        let value = Value::Obj(vec![
            ("id", info.id.to_hex().into()),
            ("kind", info.kind.name().into()),
            ("size", info.payload_len.into()),
            (
                "links",
                Value::Arr(info.links.iter().map(|l| l.to_hex().into()).collect()),
            ),
            ("path", info.path.display().to_string().into()),
            ("offset", info.packed_at.map_or(Value::Null, Value::from)),
        ]);
        print_line(&mut out, value.render())?;
    } else {
        print_line(&mut out, format_args!("id     {}", info.id))?;
        print_line(&mut out, format_args!("kind   {}", info.kind))?;
        print_line(&mut out, format_args!("size   {} bytes", info.payload_len))?;
        print_line(&mut out, format_args!("links  {}", info.links.len()))?;
        for link in &info.links {
            print_line(&mut out, format_args!("  {link}"))?;
        }
        match info.packed_at {
            Some(offset) => print_line(
                &mut out,
                format_args!("pack   {} at byte {offset}", info.path.display()),
            )?,
            None => print_line(&mut out, format_args!("path   {}", info.path.display()))?,
        }
    }
    out.flush().map_err(super::output_failure)
}
