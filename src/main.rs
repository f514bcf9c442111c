//! The server binary: read settings, start logging, serve.

#[cfg(feature = "ssr")]
fn main() -> std::process::ExitCode {
    one_malloc_arena();
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime.block_on(serve()),
        Err(err) => {
            eprintln!("broadcasting: cannot start the async runtime: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// glibc gives each thread that contends for the heap its own arena; with thousands of connections spread over
/// the workers, that fragments memory: one arena holds an idle event stream in about 16 KiB instead of 18
/// (BENCHMARKS.md). Called before any other thread exists.
#[cfg(feature = "ssr")]
fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; no other thread runs yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

#[cfg(feature = "ssr")]
async fn serve() -> std::process::ExitCode {
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
