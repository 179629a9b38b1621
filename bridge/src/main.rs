//! The bridge binary: parse the command line, set up logging, serve.

use clap::Parser;

use bridge::config::{Cli, LogFormat, Settings};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::from_cli(cli) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("bridge: {err:#}");
            return std::process::ExitCode::from(2);
        }
    };
    init_tracing(settings.log_format);
    match bridge::run(settings, bridge::shutdown_signal()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bridge: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
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
