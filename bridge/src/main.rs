//! The bridge binary: settings from the command line, environment and
//! config file; then serve, or run an administrative command.

use std::io::BufRead;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use bridge::config::{Cli, Command, LogFormat, Settings, UserAction};

fn main() -> ExitCode {
    bridge::auth::pool::return_large_allocations_to_the_system();
    // The config file's values become environment defaults before clap
    // reads the environment, and before any thread exists (set_var is only
    // sound single-threaded).
    let args: Vec<String> = std::env::args().collect();
    match bridge::config::config_file_env(&args) {
        Ok(pairs) => {
            for (key, value) in pairs {
                std::env::set_var(key, value);
            }
        }
        Err(err) => {
            eprintln!("bridge: {err}");
            return ExitCode::from(2);
        }
    }
    let cli = Cli::parse();
    let settings = match Settings::from_cli(&cli) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("bridge: {err}");
            return ExitCode::from(2);
        }
    };
    init_tracing(settings.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("bridge: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            None | Some(Command::Serve) => bridge::run(settings, bridge::shutdown_signal()).await,
            Some(Command::User { action }) => user_command(settings, action).await,
            Some(Command::Backup { dest }) => backup(settings, dest).await,
            Some(Command::Openapi) => {
                print!("{}", *bridge::http::openapi::DOCUMENT);
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bridge: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn user_command(settings: Settings, action: UserAction) -> anyhow::Result<()> {
    use bridge::unix::{self, MappedBy};
    let UserAction::Add { name, role, unix_user } = action;
    let store = bridge::open_store(&settings)?;
    let mut password = String::new();
    std::io::stdin().lock().read_line(&mut password).context("read the password from stdin")?;
    let password = password.trim_end_matches(['\n', '\r']).to_owned();
    anyhow::ensure!(password.chars().count() >= 8, "the password must be at least 8 characters");
    // Whoever runs this is the machine's administrator: a mapping made here
    // is an admin's. An explicit --unix-user must pass the rules; without
    // it, the same-name account is mapped only if it would pass them.
    let range = settings.uid_range();
    let mapping = match unix_user {
        Some(unix_user) => {
            unix::resolve(&unix_user, range, MappedBy::Admin).context("--unix-user")?;
            Some(unix_user)
        }
        None => unix::resolve(&name, range, MappedBy::Admin).ok().map(|a| a.name),
    };
    let pool = bridge::auth::pool::CredentialPool::new(1, 1);
    let hash = bridge::auth::password::hash(&pool, password, settings.password_cost).await?;
    let role = role.into();
    let created = {
        let (name, mapping) = (name.clone(), mapping.clone());
        store
            .call(move |conn| {
                bridge::store::users::create(conn, &name, &hash, role, mapping.as_deref().map(|m| (m, MappedBy::Admin)))
            })
            .await?
    };
    anyhow::ensure!(created.is_some(), "the name {name:?} is taken");
    match mapping {
        Some(unix_user) => println!("created {} {name}, jobs run as Unix account {unix_user}", role.as_str()),
        None => println!("created {} {name}, not mapped to a Unix account (it cannot submit jobs)", role.as_str()),
    }
    Ok(())
}

async fn backup(settings: Settings, dest: std::path::PathBuf) -> anyhow::Result<()> {
    anyhow::ensure!(!dest.exists(), "{} exists; choose a new file", dest.display());
    let store = bridge::open_store(&settings)?;
    store.backup(dest.clone()).await?;
    println!("backed up {} to {}", settings.db_path().display(), dest.display());
    Ok(())
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BRIDGE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tower_http=info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
