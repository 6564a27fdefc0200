//! The command reference (`docs/cli.md`), generated from the clap definitions: every command's
//! `--help`, in the order `medchain --help` lists them.

/// The reference of `cmd` (the whole command line) as Markdown.
pub fn markdown(cmd: clap::Command) -> String {
    let mut cmd = cmd;
    cmd.build();
    let mut out = String::from(
        "# The `medchain` command reference\n\n\
         Every command's `--help`, generated from the command definitions; a test of the \
         `medchain` package fails when this file is not current (regenerate it with \
         `MEDCHAIN_BLESS=1 cargo test -p medchain --test docs`). Errors are one line on stderr \
         starting with `error:`, with exit status 1; `medchain node` exits with 2 when the node \
         stopped on its own (a storage failure it cannot go on from).\n",
    );
    section(&mut out, &mut cmd, "medchain");
    out
}

fn section(out: &mut String, cmd: &mut clap::Command, path: &str) {
    out.push_str(&format!("\n## `{path}`\n\n```text\n"));
    let help = cmd.render_long_help().to_string();
    out.push_str(help.trim_end());
    out.push_str("\n```\n");
    let names: Vec<String> = cmd
        .get_subcommands()
        .filter(|s| s.get_name() != "help")
        .map(|s| s.get_name().to_owned())
        .collect();
    for name in names {
        let sub = cmd.find_subcommand_mut(&name).expect("a listed subcommand");
        section(out, sub, &format!("{path} {name}"));
    }
}
