//! The `medchain` command line: the node's own commands ([`args`]) and those of the apps the
//! binary is built with, in one clap command. [`main`] is the binary's whole `main`.

mod args;
mod reference;
mod run;

pub use reference::markdown;
pub use run::NodeFailed;

use clap::{CommandFactory, FromArgMatches};
use medchain_app::App;
use std::process::ExitCode;
use std::sync::Arc;

/// The whole command line: the node's commands, with each app's added at the top level or
/// under the node command it names (`bench`).
pub fn command(apps: &[Arc<dyn App>]) -> clap::Command {
    let mut cmd = args::Cli::command();
    for app in apps {
        for c in app.commands() {
            cmd = match c.parent {
                None => cmd.subcommand(c.command),
                Some(parent) => cmd.mut_subcommand(parent, |p| p.subcommand(c.command)),
            };
        }
    }
    cmd
}

/// Parses the arguments and runs the command; errors are one line on stderr starting with
/// `error:`, and the exit status is 1 (2 when a node stopped on its own).
pub fn main(apps: Vec<Arc<dyn App>>) -> ExitCode {
    medchain_app::client::install_tls_provider();
    let matches = command(&apps).get_matches();
    match dispatch(&apps, &matches) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.is::<NodeFailed>() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Runs the command `matches` names: an app's, or one of the node's.
fn dispatch(apps: &[Arc<dyn App>], matches: &clap::ArgMatches) -> anyhow::Result<()> {
    if let Some(ca) = matches.get_one::<std::path::PathBuf>("ca_file") {
        medchain_app::client::set_ca_file(ca)?;
    }
    if let Some((name, sub)) = matches.subcommand() {
        let nested = sub.subcommand();
        for app in apps {
            for c in app.commands() {
                match (c.parent, nested) {
                    (None, _) if c.command.get_name() == name => {
                        return app.run_command(None, name, sub);
                    }
                    (Some(parent), Some((child, args)))
                        if parent == name && c.command.get_name() == child =>
                    {
                        return app.run_command(Some(parent), child, args);
                    }
                    _ => {}
                }
            }
        }
    }
    run::run(args::Cli::from_arg_matches(matches)?, apps)
}
