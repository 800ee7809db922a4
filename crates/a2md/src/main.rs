//! `a2md`: the command-line tool over the mod_md store (SPEC.md section 7).
#![forbid(unsafe_code)]

mod acme;
mod check;
mod cli;
mod drive;
mod log;
mod out;
mod reg;
mod status;
mod store;

use clap::{CommandFactory, Parser};

use cli::{Cli, Cmd};
use out::{CmdResult, Fail, Out};

fn run(cli: &Cli, out: &mut Out) -> CmdResult {
    let Some(cmd) = &cli.cmd else {
        return Err(Fail::usage("no command given (see a2md --help)"));
    };
    match cmd {
        Cmd::Acme { cmd } => acme::run(cli, out, cmd),
        Cmd::Add { domains } => reg::add(cli, out, domains),
        Cmd::Update { name, what } => reg::update(cli, out, name, what.as_ref()),
        Cmd::Drive { .. } => drive::run(cli, out),
        Cmd::List => reg::list(cli, out),
        Cmd::Store { cmd } => reg::store_cmd(cli, out, cmd),
        Cmd::Status { md } => status::run(cli, out, md.as_deref()),
        Cmd::Check => check::run(cli, out),
    }
}

/// The man page a2md.1, from the same definitions as --help.
fn man_page() -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut buf)?;
    Ok(buf)
}

fn main() {
    let cli = Cli::parse();
    if cli.version {
        println!("version: {}", md_core::VERSION);
        return;
    }
    if cli.man {
        match man_page() {
            Ok(b) => print!("{}", String::from_utf8_lossy(&b)),
            Err(e) => {
                eprintln!("a2md: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    let mut out = Out::new(cli.json);
    let res = run(&cli, &mut out);
    // `status -j` prints md-status JSON itself; every other command the C tool's document
    let raw = matches!(cli.cmd, Some(Cmd::Status { .. }));
    if out.json && !(raw && res.is_ok()) {
        let doc = out.document(&res);
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    }
    if let Err(f) = res {
        if !out.json || cli.verbose > 0 {
            eprintln!("a2md: {}", f.msg);
        }
        std::process::exit(f.exit);
    }
}
