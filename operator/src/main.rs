//! The `vigil` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser;
use vigil::cli::{self, Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crds(args) => match cli::crds(&args, &mut std::io::stdout()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::from(2)
            }
        },
        Command::Validate(input) => {
            cli::validate(&input, &mut std::io::stdout(), &mut std::io::stderr())
        }
        Command::Render(args) => cli::render(&args, &mut std::io::stdout(), &mut std::io::stderr()),
        Command::Status(args) => cli::status(&args, &mut std::io::stdout(), &mut std::io::stderr()),
        Command::Check(args) => cli::check(&args, &mut std::io::stdout(), &mut std::io::stderr()),
        Command::Renew(args) => cli::renew(&args, &mut std::io::stdout(), &mut std::io::stderr()),
        Command::Breaker(args) => {
            cli::breaker(&args, &mut std::io::stdout(), &mut std::io::stderr())
        }
        Command::Config(args) => cli::config(&args, &mut std::io::stdout(), &mut std::io::stderr()),
        Command::Run(args) => run(*args),
    }
}

fn run(args: cli::RunArgs) -> ExitCode {
    let _telemetry = match vigil::telemetry::init() {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("error: cannot set up logging: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the async runtime");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(vigil::controllers::run(args.options())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "vigil stopped");
            ExitCode::FAILURE
        }
    }
}
