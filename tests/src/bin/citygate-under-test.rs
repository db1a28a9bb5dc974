//! The `citygate` command, built inside the test crate so that end-to-end tests can start it
//! as a separate process (`CARGO_BIN_EXE_citygate-under-test`).
fn main() -> std::process::ExitCode {
    citygate::cli::main()
}
