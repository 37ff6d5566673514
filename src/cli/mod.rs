//! Command-line front end. One module per subcommand, each a clap `Args`
//! struct and a `run` function.
//!
//! Exit codes: 0 success, 1 the operation failed (not found, corrupt, I/O),
//! 2 usage error (bad arguments, malformed id).

mod clean;
mod config;
mod entry;
mod exists;
mod gc;
mod get;
mod index;
mod init;
mod json;
mod progress;
mod put;
mod refs;
mod show;
mod simulate;
mod stats;
mod verify;

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use rask_store::{Durability, Error, IdSpec, ObjectId, Store, StoreOptions};

/// Exit code for success.
pub const EXIT_OK: u8 = 0;
/// Exit code when the operation failed: not found, corrupt, I/O.
pub const EXIT_FAILED: u8 = 1;
/// Exit code for a usage error.
pub const EXIT_USAGE: u8 = 2;
/// Exit code when a check ran and found problems (`verify`).
pub const EXIT_PROBLEMS: u8 = 3;

/// The store directory used when neither --store nor RASK_STORE is given.
const DEFAULT_STORE: &str = ".rask-cache";

#[derive(Parser, Debug)]
#[command(
    name = "rask-store",
    version,
    about = "A content-addressed object store: the on-disk build cache of a compiler",
    long_about = "A content-addressed object store: the on-disk build cache of a compiler.\n\n\
        Every artifact is an immutable object named by the BLAKE3 hash of its kind, links \
        and payload, kept in objects/<2 hex>/<62 hex> under the store directory. Every read \
        re-checks the hash: damaged bytes are reported, never returned.\n\n\
        The store is found through --store DIR, else the RASK_STORE environment variable, \
        else .rask-cache/ in the current directory.\n\n\
        Exit codes: 0 success, 1 the operation failed (not found, corrupt, I/O), 2 usage error, \
        3 verify found problems."
)]
struct Cli {
    /// Store directory [default: .rask-cache in the current directory]
    #[arg(long, global = true, env = "RASK_STORE", value_name = "DIR")]
    store: Option<PathBuf>,

    /// What survives a power loss: `none` (no syncing; fastest), `batch` (sync everything
    /// once at the end of the command), `full` (sync every file before it is published)
    #[arg(long, global = true, value_enum, default_value_t = DurabilityArg::Batch)]
    durability: DurabilityArg,

    /// Die at a named step (POINT or POINT:N, the N-th time it is reached) as kill -9
    /// would: for crash tests only (see `rask_store::fault`)
    #[arg(long, global = true, hide = true, value_name = "POINT[:N]")]
    fault_point: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a store (does nothing to an existing one)
    Init(init::Args),
    /// Store files (or standard input) as objects and print their ids
    Put(put::Args),
    /// Write an object's payload to standard output or a file, after checking it
    Get(get::Args),
    /// Describe an object: kind, payload size, links, path on disk
    Show(show::Args),
    /// Read and update per-package refs (compare-and-swap), list them, show their reflogs
    Ref(refs::Args),
    /// Check that objects exist; print the missing ones and exit 1 if any are
    Exists(exists::Args),
    /// Re-hash every object and check every link; report (and --repair) damage
    Verify(verify::Args),
    /// Hits and misses per namespace and tier, and store size by kind
    Stats(stats::Args),
    /// Remove what no root needs; evict old entries under a size cap or age limit
    Gc(gc::Args),
    /// Delete everything, or one namespace (a compiler identity) and what only it reaches
    Clean(clean::Args),
    /// Show or change the store configuration (gc size cap, age limit, grace period)
    Config(config::Args),
    /// Build a synthetic workspace again and again as a compiler would, checking every scenario
    Simulate(simulate::Args),
    /// Put, get and show keyed entries: a composite key mapped to named parts
    Entry(entry::Args),
    /// Index statistics and compaction
    Index(index::Args),
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum DurabilityArg {
    None,
    Batch,
    Full,
}

/// What every subcommand gets: where the store is and how to open it.
pub struct Context {
    store_path: PathBuf,
    /// Whether --store or RASK_STORE named the store (simulate uses a temp one otherwise).
    store_named: bool,
    options: StoreOptions,
}

impl Context {
    /// Opens the existing store.
    pub fn open(&self) -> Result<Store, Failure> {
        Ok(Store::open(&self.store_path, self.configured())?)
    }

    /// The options with the store's own `objects.pack-max`, when it sets
    /// one. A missing or unreadable configuration sets nothing here: the
    /// commands that use it (`config`, `gc`) report it, and a directory
    /// that is no store is reported by the open.
    fn configured(&self) -> StoreOptions {
        let layout = rask_store::layout::Layout::new(&self.store_path);
        rask_store::config::StoreConfig::read(&layout)
            .ok()
            .and_then(|config| config.size(rask_store::config::PACK_MAX_KEY))
            .map_or(self.options, |pack_max| {
                self.options.with_pack_max(pack_max)
            })
    }

    /// Whether the user named the store (--store or RASK_STORE).
    pub fn store_named(&self) -> bool {
        self.store_named
    }

    /// The options stores are opened with.
    pub fn options(&self) -> StoreOptions {
        self.options
    }

    /// Opens the store, creating it if needed.
    pub fn create(&self) -> Result<Store, Failure> {
        Ok(Store::create(&self.store_path, self.configured())?)
    }

    /// Parses an id argument and resolves a prefix against `store`.
    pub fn resolve_id(store: &Store, text: &str) -> Result<ObjectId, Failure> {
        let spec: IdSpec = text.parse()?;
        Ok(store.resolve(&spec)?)
    }
}

/// A failed command: the exit code and what to print.
#[derive(Debug)]
pub struct Failure {
    code: u8,
    message: Option<String>,
}

impl Failure {
    /// A usage error (exit 2).
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure {
            code: EXIT_USAGE,
            message: Some(message.into()),
        }
    }

    /// A failed operation (exit 1).
    pub fn failed(message: impl Into<String>) -> Failure {
        Failure {
            code: EXIT_FAILED,
            message: Some(message.into()),
        }
    }

    /// Exit with `code` and nothing more to say (the command printed its findings).
    pub fn exit(code: u8) -> Failure {
        Failure {
            code,
            message: None,
        }
    }

    /// Exit 1 with nothing more to say (the command already printed it).
    pub fn silent() -> Failure {
        Failure {
            code: EXIT_FAILED,
            message: None,
        }
    }
}

impl From<Error> for Failure {
    fn from(err: Error) -> Failure {
        if let Error::Io { source, path, .. } = &err
            && source.kind() == io::ErrorKind::BrokenPipe
            && path.as_os_str() == "(output)"
        {
            // The reader went away (`rask-store get … | head`): nothing to report.
            return Failure::silent();
        }
        let code = if err.is_usage() {
            EXIT_USAGE
        } else {
            EXIT_FAILED
        };
        let mut message = err.to_string();
        match err {
            Error::Corrupt { .. } => message.push_str(
                "\n  The damaged copy is never returned; putting the same content again \
                 replaces it.",
            ),
            Error::NotFound { .. } => {
                message.push_str("\n  Check the id, or the store with --store / RASK_STORE.")
            }
            _ => {}
        }
        Failure {
            code,
            message: Some(message),
        }
    }
}

/// Writes a line to standard output, mapping a closed pipe to a silent failure.
pub fn print_line(out: &mut impl Write, line: impl std::fmt::Display) -> Result<(), Failure> {
    writeln!(out, "{line}").map_err(output_failure)
}

/// Writes the file at `path` so that it appears only once complete: `fill`
/// writes into a temp file beside it, which is then renamed over `path`.
/// On any failure no file (and no temp file) is left.
///
/// A `path` that names something other than a regular file or a directory
/// (`/dev/null`, `/dev/stdout`, a named pipe) is written in place: renaming
/// over it would replace the device or pipe with a file. A symbolic link is
/// followed, so the file it names is replaced and the link stays.
pub fn write_file_atomically(
    path: &std::path::Path,
    fill: impl FnOnce(&mut dyn Write) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let write_failed =
        |e: io::Error| Failure::failed(format!("could not write {}: {e}", path.display()));
    if let Ok(meta) = std::fs::metadata(path)
        && !meta.is_file()
        && !meta.is_dir()
    {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| Failure::failed(format!("could not open {}: {e}", path.display())))?;
        let mut writer = io::BufWriter::new(file);
        fill(&mut writer)?;
        return writer.flush().map_err(write_failed);
    }
    let resolved;
    let path = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            resolved = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
            resolved.as_path()
        }
        _ => path,
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => std::path::Path::new("."),
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
    {
        let mut writer = io::BufWriter::new(temp.as_file_mut());
        fill(&mut writer)?;
        writer.flush().map_err(write_failed)?;
    }
    temp.persist(path).map_err(|e| {
        Failure::failed(format!("could not create {}: {}", path.display(), e.error))
    })?;
    Ok(())
}

/// Maps an error writing to standard output.
pub fn output_failure(err: io::Error) -> Failure {
    if err.kind() == io::ErrorKind::BrokenPipe {
        Failure::silent()
    } else {
        Failure::failed(format!("could not write to standard output: {err}"))
    }
}

/// Arms the fault point named by `spec` (from --fault-point or the
/// environment), which then prints its name just before the process aborts.
fn arm_fault_point(spec: &str) -> Result<(), Failure> {
    let (point, nth) = rask_store::fault::parse(spec).map_err(Failure::usage)?;
    rask_store::fault::arm(point, nth, |point| {
        eprintln!("rask-store: fault point {} reached: aborting", point.name());
    });
    Ok(())
}

/// Runs the command line and returns the process exit code. `fault_env`
/// is the fault point the environment names, if any.
pub fn main(fault_env: Option<String>) -> ExitCode {
    let cli = Cli::parse();
    if let Some(spec) = cli.fault_point.as_deref().or(fault_env.as_deref())
        && let Err(failure) = arm_fault_point(spec)
    {
        if let Some(message) = failure.message {
            eprintln!("rask-store: error: {message}");
        }
        return ExitCode::from(failure.code);
    }
    let ctx = Context {
        store_named: cli.store.is_some(),
        store_path: cli.store.unwrap_or_else(|| PathBuf::from(DEFAULT_STORE)),
        options: StoreOptions::with_durability(match cli.durability {
            DurabilityArg::None => Durability::None,
            DurabilityArg::Batch => Durability::Batch,
            DurabilityArg::Full => Durability::Full,
        }),
    };
    let result = match cli.command {
        Command::Init(args) => init::run(&ctx, args),
        Command::Put(args) => put::run(&ctx, args),
        Command::Get(args) => get::run(&ctx, args),
        Command::Show(args) => show::run(&ctx, args),
        Command::Ref(args) => refs::run(&ctx, args),
        Command::Exists(args) => exists::run(&ctx, args),
        Command::Verify(args) => verify::run(&ctx, args),
        Command::Stats(args) => stats::run(&ctx, args),
        Command::Gc(args) => gc::run(&ctx, args),
        Command::Clean(args) => clean::run(&ctx, args),
        Command::Config(args) => config::run(&ctx, args),
        Command::Simulate(args) => simulate::run(&ctx, args),
        Command::Entry(args) => entry::run(&ctx, args),
        Command::Index(args) => index::run(&ctx, args),
    };
    match result {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(failure) => {
            if let Some(message) = failure.message {
                eprintln!("rask-store: error: {message}");
            }
            ExitCode::from(failure.code)
        }
    }
}
