//! The `citygate` binary.
fn main() -> std::process::ExitCode {
    citygate::cli::main()
}
