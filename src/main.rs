//! The `authd` binary.

fn main() -> std::process::ExitCode {
    authd::cli::main()
}
