//! `a2md`: the command-line tool over the mod_md store (SPEC.md section 7).
use clap::Parser;

/// Command line of a2md; sub-commands arrive with the store and ACME issues.
#[derive(Parser, Debug)]
#[command(
    name = "a2md",
    about = "Manage the mod_md certificate store and ACME accounts",
    disable_version_flag = true
)]
struct Cli {
    /// Print the version as "version: <semver>" and exit.
    #[arg(short = 'V', long = "version")]
    version: bool,
}

fn main() {
    let cli = Cli::parse();
    if cli.version {
        println!("version: {}", md_core::VERSION);
        return;
    }
    eprintln!("a2md: no command given (see a2md --help); store commands are not implemented yet");
    std::process::exit(1);
}
