//! The `rask-store` command: parses arguments, calls the library, prints,
//! and maps errors to exit codes. All store logic lives in the library.

mod cli;

/// Arms a fault point for the crash tests (see `rask_store::fault`), like
/// the hidden `--fault-point` option.
const FAULT_ENV: &str = "RASK_STORE_FAULT";

fn main() -> std::process::ExitCode {
    cli::main(std::env::var(FAULT_ENV).ok())
}
