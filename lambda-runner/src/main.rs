//! `rivulet-runner`: the Rust runner with the example actors (`counter`, `chat`). Your own
//! binary does the same with your registry.

use std::process::ExitCode;

fn main() -> ExitCode {
    rivulet_lambda_runner::cli::main(rivulet_lambda_runner::examples::registry())
}
