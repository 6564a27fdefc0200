//! `medchain`: the node and command-line tool, with this build's apps. Every subcommand has
//! `--help`; `docs/cli.md` lists them all.

fn main() -> std::process::ExitCode {
    medchain_node::cli::main(medchain::apps())
}
