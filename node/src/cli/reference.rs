//! The command reference (`docs/cli.md`), generated from the clap definitions: every command's
//! `--help`, exactly as the binary prints it, in the order `medchain --help` lists them.

/// The reference of `cmd` (the whole command line) as Markdown.
pub fn markdown(cmd: clap::Command) -> String {
    let mut out = String::from(
        "# The `medchain` command reference\n\n\
         Every command's `--help`, generated from the command definitions; a test of the \
         `medchain` package fails when this file is not current (regenerate it with \
         `MEDCHAIN_BLESS=1 cargo test -p medchain --test docs`). Errors are one line on stderr \
         starting with `error:`, with exit status 1; `medchain node` exits with 2 when the node \
         stopped on its own (a storage failure it cannot go on from).\n",
    );
    let mut root = cmd.clone();
    root.build();
    section(&mut out, &cmd, &root, &mut vec!["medchain".to_owned()]);
    out
}

/// The section of the command at `path` (under `built`, the same command built), then those of
/// its subcommands.
fn section(out: &mut String, cmd: &clap::Command, built: &clap::Command, path: &mut Vec<String>) {
    let mut args = path.clone();
    args.push("--help".into());
    let help = match cmd.clone().try_get_matches_from(&args) {
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelp => e.render().to_string(),
        other => panic!("{args:?} does not print its help: {other:?}"),
    };
    out.push_str(&format!("\n## `{}`\n\n```text\n", path.join(" ")));
    out.push_str(help.trim_end());
    out.push_str("\n```\n");
    for sub in built.get_subcommands().filter(|s| s.get_name() != "help") {
        path.push(sub.get_name().to_owned());
        section(out, cmd, sub, path);
        path.pop();
    }
}
