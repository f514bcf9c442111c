//! The server binary: read settings, start logging, serve.

#[cfg(feature = "ssr")]
#[tokio::main]
async fn main() -> std::process::ExitCode {
    use broadcasting::server::settings::{Cli, Settings};
    use clap::Parser;

    let settings = match Settings::from_cli(Cli::parse()) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("broadcasting: {err}");
            return std::process::ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    match broadcasting::server::startup::run(settings).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("broadcasting: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(not(feature = "ssr"))]
fn main() {
    // The server needs the `ssr` feature; the browser build (`hydrate`) has no binary.
}
