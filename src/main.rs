//! The `rask-store` command: parses arguments, calls the library, prints,
//! and maps errors to exit codes. All store logic lives in the library.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
