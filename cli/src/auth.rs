//! `login`, `logout`, `whoami`.

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use anyhow::Context;
use serde_json::json;

use crate::api::{self, Api, Connection};
use crate::credentials::{self, Credentials};

#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// Account name (default: $USER).
    #[arg(long, short)]
    user: Option<String>,
    /// Read the password from the first line of stdin (scripts).
    #[arg(long)]
    password_stdin: bool,
    /// pam: your Unix account's password, which also proves (and maps)
    /// your Unix account; password: a bridge-only password.
    #[arg(long, value_enum, default_value_t = Method::Pam)]
    method: Method,
    /// Sign in through the site's identity provider instead (the device
    /// grant: open the address it prints; or a browser redirect).
    #[arg(long, conflicts_with_all = ["user", "password_stdin"])]
    sso: bool,
    /// With --sso: which provider, when the bridge offers several.
    #[arg(long, requires = "sso")]
    issuer: Option<String>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Method {
    Pam,
    Password,
}

pub fn login(conn: &Connection, args: LoginArgs) -> anyhow::Result<ExitCode> {
    let url = match (&conn.url, credentials::load()?) {
        (Some(url), _) => url.clone(),
        (None, Some(stored)) => stored.url,
        (None, None) => anyhow::bail!("which bridge? odyssey login --url URL (or ODYSSEY_URL)"),
    };
    if args.sso {
        return sso_login(conn, &url, args.issuer.as_deref());
    }
    let name = match args.user {
        Some(name) => name,
        None => std::env::var("USER").context("--user NAME (USER is not set)")?,
    };
    let password = if args.password_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context("read the password from stdin")?;
        line.trim_end_matches(['\n', '\r']).to_owned()
    } else {
        anyhow::ensure!(std::io::stdin().is_terminal(), "no terminal to ask for the password: use --password-stdin");
        rpassword::prompt_password(format!("Password for {name} at {url}: ")).context("read the password")?
    };
    anyhow::ensure!(!password.is_empty(), "an empty password");
    let method = match args.method {
        Method::Pam => "pam",
        Method::Password => "password",
    };
    let mut api = Api::anonymous(conn, &url)?;
    let login_url = api.url("/v1/auth/login");
    let body = json!({"name": name, "password": password, "method": method});
    let pair: serde_json::Value = api.send(|c| c.post(&login_url).json(&body))?.json()?;
    store(&api, &name, &pair)?;
    println!("signed in to {} as {name}", api.base);
    Ok(ExitCode::SUCCESS)
}

fn sso_login(conn: &Connection, url: &str, issuer: Option<&str>) -> anyhow::Result<ExitCode> {
    let mut api = Api::anonymous(conn, url)?;
    let token = crate::sso::provider_token(&mut api, issuer)?;
    let (pair, name) = crate::sso::bridge_login(&mut api, &token)?;
    store(&api, &name, &pair)?;
    println!("signed in to {} as {name} (single sign-on)", api.base);
    Ok(ExitCode::SUCCESS)
}

fn store(api: &Api, name: &str, pair: &serde_json::Value) -> anyhow::Result<()> {
    credentials::save(&Credentials {
        url: api.base.clone(),
        name: name.to_owned(),
        access_token: api::str_field(pair, "access_token")?,
        refresh_token: api::str_field(pair, "refresh_token")?,
        access_expires_at: api::now() + pair["expires_in"].as_f64().unwrap_or(0.0),
    })
}

/// Revokes the access token and its login at the bridge, then forgets
/// them; forgets them even when the bridge cannot be reached (and says so).
pub fn logout(conn: &Connection) -> anyhow::Result<ExitCode> {
    let Some(stored) = credentials::load()? else {
        println!("not signed in");
        return Ok(ExitCode::SUCCESS);
    };
    let mut api = Api::signed_in(conn)?;
    let url = api.url("/v1/auth/logout");
    let body = json!({"refresh_token": stored.refresh_token});
    let revoked = api.send(|c| c.post(&url).json(&body));
    credentials::remove()?;
    match revoked {
        Ok(_) => println!("signed out of {}", stored.url),
        Err(err) => eprintln!("odyssey: forgot the sign-in, but the bridge did not revoke it: {err:#}"),
    }
    Ok(ExitCode::SUCCESS)
}

pub fn whoami(conn: &Connection, json_out: bool) -> anyhow::Result<ExitCode> {
    let mut api = Api::signed_in(conn)?;
    let me = api.get_json("/v1/auth/me")?;
    if json_out {
        println!("{me}");
    } else {
        let unix = me["unix_user"].as_str().unwrap_or("(not mapped: jobs cannot be submitted)");
        println!(
            "{} ({}) at {}, jobs run as {unix}",
            me["name"].as_str().unwrap_or("?"),
            me["role"].as_str().unwrap_or("?"),
            api.base
        );
    }
    Ok(ExitCode::SUCCESS)
}
