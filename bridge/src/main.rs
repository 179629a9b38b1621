//! The bridge binary: settings from the command line, environment and
//! config file; then serve, or run an administrative command.

use std::io::BufRead;
use std::path::PathBuf;
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
            Some(Command::Backup { dest, dir, keep }) => backup(settings, dest, dir, keep).await,
            Some(Command::Restore { from }) => restore(settings, from).await,
            Some(Command::WorkerToken { expires_in, features, token_file }) => {
                worker_token(settings, expires_in, features, token_file).await
            }
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

async fn worker_token(
    settings: Settings,
    expires_in: u64,
    features: Vec<String>,
    token_file: Option<PathBuf>,
) -> anyhow::Result<()> {
    use bridge::workers::{check_features, new_token, token_hash, MAX_TOKEN_TTL};
    anyhow::ensure!(
        (60..=MAX_TOKEN_TTL.as_secs()).contains(&expires_in),
        "--expires-in must be 60 to {} seconds",
        MAX_TOKEN_TTL.as_secs()
    );
    let features = check_features(&features).map_err(|e| anyhow::anyhow!("--features: {e}"))?;
    let (token, hash, write_to) = match &token_file {
        Some(path) if path.exists() => {
            let token = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
            let token = token.trim().to_owned();
            anyhow::ensure!(
                token.len() >= 43 && token.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_')),
                "{} does not hold a token (at least 43 letters, digits, '-' or '_')",
                path.display()
            );
            let hash = token_hash(&token);
            (token, hash, None)
        }
        _ => {
            let (token, hash) = new_token();
            (token, hash, token_file.clone())
        }
    };
    let store = bridge::open_store(&settings)?;
    let expires_at = bridge::store::now() + expires_in as f64;
    store
        .call(move |conn| {
            bridge::store::workers::insert_token(conn, &hash, "bridge worker-token", expires_at, &features)
        })
        .await
        .context("record the token (was it recorded before?)")?;
    match write_to {
        Some(path) => {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .with_context(|| format!("create {}", path.display()))?;
            writeln!(file, "{token}")?;
            eprintln!("bridge: join token written to {} (valid {expires_in} s)", path.display());
        }
        None if token_file.is_some() => eprintln!("bridge: the token in the file is valid for {expires_in} s"),
        None => println!("{token}"),
    }
    Ok(())
}

async fn backup(
    settings: Settings,
    dest: Option<PathBuf>,
    dir: Option<PathBuf>,
    keep: Option<u32>,
) -> anyhow::Result<()> {
    let dest = match (&dest, &dir) {
        (Some(dest), _) => dest.clone(),
        (None, Some(dir)) => {
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
            dir.join(bridge::backups::file_name(time::OffsetDateTime::now_utc()))
        }
        (None, None) => anyhow::bail!("name a destination file or --dir"),
    };
    anyhow::ensure!(!dest.exists(), "{} exists; choose a new file", dest.display());
    anyhow::ensure!(settings.db_path().exists(), "no database at {}", settings.db_path().display());
    let store = bridge::open_store(&settings)?;
    store.backup(dest.clone()).await?;
    // A copy that does not check out is not a backup: remove it, say why.
    let checked = bridge::store::check_backup(&dest);
    if let Err(err) = checked {
        let _ = std::fs::remove_file(&dest);
        anyhow::bail!("the copy failed its check and was removed: {err}");
    }
    println!("backed up {} to {}", settings.db_path().display(), dest.display());
    if let (Some(dir), Some(keep)) = (dir, keep) {
        for removed in
            bridge::backups::prune(&dir, keep as usize).with_context(|| format!("prune {}", dir.display()))?
        {
            println!("removed {} (keeping the newest {keep})", removed.display());
        }
    }
    Ok(())
}

async fn restore(settings: Settings, from: PathBuf) -> anyhow::Result<()> {
    let version =
        bridge::store::check_backup(&from).with_context(|| format!("{} cannot be restored", from.display()))?;
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("create data directory {}", settings.data_dir.display()))?;
    let _lock = bridge::lock::DataDirLock::take(&settings.data_dir)?;
    let db = settings.db_path();
    if db.exists() {
        let stamp = bridge::backups::file_name(time::OffsetDateTime::now_utc());
        let kept = settings.data_dir.join(format!("bridge.db.before-restore-{stamp}"));
        bridge::open_store(&settings)?.backup(kept.clone()).await?;
        println!("kept the database it replaces as {}", kept.display());
    }
    let (target, source) = (db.clone(), from.clone());
    tokio::task::spawn_blocking(move || bridge::store::restore(&target, &source)).await??;
    println!(
        "restored {} (schema version {version}) into {}; start the bridge (it migrates an older schema forward)",
        from.display(),
        db.display()
    );
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
