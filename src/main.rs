use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = idgate::cli::Cli::parse();
    if let Err(e) = idgate::cli::run(cli).await {
        eprintln!("idgate: {e:#}");
        std::process::exit(1);
    }
}
