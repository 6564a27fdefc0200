//! `medchain`: the node and command-line tool. Every subcommand has `--help`.

mod demo;
mod keyfile;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use medchain_ledger::Ledger;
use std::path::PathBuf;
use std::process::ExitCode;

/// medchain: a blockchain framework with swappable consensus and a health-record application.
#[derive(Parser, Debug)]
#[command(name = "medchain", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Generate an ed25519 key file (mode 0600) and print its public key.
    Keygen {
        /// Where to write the key file.
        #[arg(long)]
        out: PathBuf,
        /// Replace the file if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Print the public key of a key file (checks that the file is a valid medchain key).
    Pubkey {
        /// The key file.
        #[arg(long)]
        key: PathBuf,
    },
    /// Check a ledger: hash links, transaction Merkle roots, indexes, receipts and state roots.
    ///
    /// Opens the ledger read-only, so it can run beside a node that is using it. Exits non-zero
    /// and names the first bad height if anything does not check out.
    VerifyChain {
        /// The ledger directory (a node's data directory).
        #[arg(long)]
        data: PathBuf,
    },
    /// Write a chain of signed `kv` transactions to a ledger, then verify it and prove one
    /// transaction's inclusion. Runs again on the same directory to extend the chain.
    Demo {
        /// The ledger directory (created if absent).
        #[arg(long, default_value = "data/demo")]
        data: PathBuf,
        /// Blocks to add.
        #[arg(long, default_value_t = 100)]
        blocks: u64,
        /// Transactions per block.
        #[arg(long, default_value_t = 200)]
        txs: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Keygen { out, force } => {
            let key = medchain_types::SecretKey::generate(&mut rand::rngs::OsRng);
            keyfile::write(&out, &key, force)?;
            println!("{}", key.public());
            Ok(())
        }
        Command::Pubkey { key } => {
            println!("{}", keyfile::read(&key)?.public());
            Ok(())
        }
        Command::VerifyChain { data } => verify_chain(&data),
        Command::Demo { data, blocks, txs } => demo::run(&data, blocks, txs),
    }
}

fn verify_chain(data: &std::path::Path) -> Result<()> {
    let ledger = Ledger::open_read_only(data)?;
    let started = std::time::Instant::now();
    let report = ledger
        .verify_chain(|done, total| {
            if total >= 1000 {
                eprintln!("verified {done}/{total} blocks");
            }
        })
        .with_context(|| format!("chain in {} does not verify", data.display()))?;
    match report.tip {
        None => println!("chain {}: empty ledger, nothing to verify", ledger.chain_id()),
        Some(tip) => println!(
            "chain {}: OK, {} blocks, {} transactions, tip height {} hash {} state root {} ({:.2?})",
            ledger.chain_id(),
            report.blocks,
            report.txs,
            tip.height,
            tip.hash,
            tip.state_root,
            started.elapsed()
        ),
    }
    Ok(())
}
