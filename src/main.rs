use clap::Parser;

fn main() {
    let cli = idgate::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("idgate: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(idgate::cli::run(cli));
    // The shutdown has already spent its bound and told any evaluation still on the blocking pool
    // to stop; the process does not wait for them to notice.
    runtime.shutdown_background();
    if let Err(e) = result {
        eprintln!("idgate: {e:#}");
        std::process::exit(1);
    }
}
