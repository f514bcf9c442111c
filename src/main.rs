//! The server binary: read settings, start logging, serve. `broadcasting migrate …` copies a SQLite log into Redis
//! (`server::migrate`); `broadcasting make-api-key NAME` makes a publish API key (`server::api_keys::make`).

#[cfg(feature = "ssr")]
fn main() -> std::process::ExitCode {
    malloc_arena_per_core();
    if std::env::args().nth(1).as_deref() == Some("make-api-key") {
        return make_api_key();
    }
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) if std::env::args().nth(1).as_deref() == Some("migrate") => runtime.block_on(migrate()),
        Ok(runtime) => runtime.block_on(serve()),
        Err(err) => {
            eprintln!("broadcasting: cannot start the async runtime: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// glibc gives each thread that contends for the heap its own arena, up to 8 per core; with thousands of
/// connections spread over the workers that fragments memory (18 KiB per idle event stream). One arena holds a
/// stream in 13 KiB but makes every worker queue for the heap lock (page renders: 1,300/s); one per core holds it
/// in 13.3 KiB and renders 2,000/s (BENCHMARKS.md). Called before any other thread exists; glibc's own
/// `MALLOC_ARENA_MAX`, when set, wins.
#[cfg(feature = "ssr")]
fn malloc_arena_per_core() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        // SAFETY: mallopt only sets an allocator parameter; no other thread runs yet.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, i32::try_from(cores).unwrap_or(i32::MAX));
        }
    }
}

#[cfg(feature = "ssr")]
async fn serve() -> std::process::ExitCode {
    use broadcasting::server::settings::{Settings, SettingsError};

    let settings = match Settings::load() {
        Ok(settings) => settings,
        // clap's own: --help and --version on standard output (exit 0), a refused flag with the usage (exit 2).
        Err(SettingsError::Cli(err)) => err.exit(),
        Err(err) => {
            eprintln!("broadcasting: {err}");
            return std::process::ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.server.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: a log file or a pipe gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).init();
    match broadcasting::server::startup::run(settings).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("broadcasting: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(feature = "ssr")]
async fn migrate() -> std::process::ExitCode {
    use broadcasting::server::migrate::{run, MigrateCli};
    use clap::Parser;

    let cli = MigrateCli::parse_from(std::env::args().skip(1));
    let (from, to) = (cli.from.clone(), cli.to.clone());
    match run(cli).await {
        Ok(report) => {
            println!("copied {} messages in {} feeds from {from} to {to}", report.messages, report.feeds.len());
            for feed in &report.feeds {
                println!("  {}: {} messages, epoch {}, next id {}", feed.feed, feed.messages, feed.epoch, feed.seq + 1);
            }
            std::process::ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("broadcasting migrate: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Prints a new key once (it is stored nowhere) and its `[[key]]` entry for the API keys file.
#[cfg(feature = "ssr")]
fn make_api_key() -> std::process::ExitCode {
    let name = std::env::args().nth(2).unwrap_or_default();
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !valid {
        eprintln!("usage: broadcasting make-api-key NAME   (NAME: 1 to 64 of a-z, 0-9, '-', '_')");
        return std::process::ExitCode::from(2);
    }
    let (key, entry) = broadcasting::server::api_keys::make(&name);
    println!(
        "# The key, shown once (stored nowhere): give it to the backend as `Authorization: Bearer <key>`.\n{key}\n"
    );
    println!("# Add this to the API keys file (api-keys-file); narrow `feeds` and `per-minute` as needed:\n{entry}");
    std::process::ExitCode::SUCCESS
}

#[cfg(not(feature = "ssr"))]
fn main() {
    // The server needs the `ssr` feature; the browser build (`hydrate`) has no binary.
}
