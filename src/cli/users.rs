//! `authd users import|export|list|show|delete|unlock`: through the running daemon's admin
//! listener (address and token from the config) when it answers, or directly on the store
//! when no daemon holds it. Import and export show a progress bar on stderr; the exit status
//! is 1 if any line failed.

use std::io::{BufRead, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::channel::Channel;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use uuid::Uuid;

use super::check::load;
use crate::config::{Config, SecretSource};
use crate::state::Generation;

#[derive(Debug, clap::Args)]
pub struct UsersArgs {
    /// The TOML configuration file.
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    /// The resource (default: the only one).
    #[arg(long, global = true)]
    subject: Option<String>,
    #[command(subcommand)]
    command: UsersCommand,
}

#[derive(Debug, clap::Subcommand)]
enum UsersCommand {
    /// Import users from an NDJSON file (one user a line; see README "Moving users in").
    Import {
        file: PathBuf,
        /// Check every line, write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Write every user, with their password hashes, as NDJSON to stdout.
    Export,
    /// List users, a page at a time.
    List {
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        after: Option<Uuid>,
        /// Find the user holding this unique value instead.
        #[arg(long)]
        identity: Option<String>,
    },
    /// Show one user.
    Show { id: Uuid },
    /// Delete one user.
    Delete { id: Uuid },
    /// Clear a user's lockouts.
    Unlock { id: Uuid },
}

/// Where the work is done.
enum Via {
    Listener {
        base: String,
        token: String,
        client: Client<HttpConnector, Channel<Bytes, std::convert::Infallible>>,
    },
    Store(Arc<Generation>),
}

/// `authd users ...`.
pub fn main(args: UsersArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("authd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: UsersArgs) -> anyhow::Result<ExitCode> {
    let path = args
        .config
        .as_deref()
        .context("--config FILE is required")?;
    let (config, text) = load(path)?;
    let subject = match (&args.subject, config.resources.as_slice()) {
        (Some(s), _) => s.clone(),
        (None, [only]) => only.spec.name.clone(),
        (None, _) => bail!("--subject is required: the config has several resources"),
    };
    if !config.resources.iter().any(|r| r.spec.name == subject) {
        bail!("resource `{subject}` is not in {}", path.display());
    }
    let via = connect(&config, &text).await?;
    match args.command {
        UsersCommand::Import { file, dry_run } => import(&via, &subject, &file, dry_run).await,
        UsersCommand::Export => export(&via, &subject).await,
        UsersCommand::List {
            limit,
            after,
            identity,
        } => {
            let mut query = format!("limit={limit}");
            if let Some(a) = after {
                query.push_str(&format!("&after={a}"));
            }
            if let Some(i) = &identity {
                query.push_str(&format!(
                    "&identity={}",
                    form_urlencoded::byte_serialize(i.as_bytes()).collect::<String>()
                ));
            }
            print_json(
                &call(
                    &via,
                    &subject,
                    Method::GET,
                    &format!("/users?{query}"),
                    None,
                )
                .await?,
            )
        }
        UsersCommand::Show { id } => {
            print_json(&call(&via, &subject, Method::GET, &format!("/users/{id}"), None).await?)
        }
        UsersCommand::Delete { id } => {
            call(
                &via,
                &subject,
                Method::DELETE,
                &format!("/users/{id}"),
                None,
            )
            .await?;
            println!("deleted {id}");
            Ok(ExitCode::SUCCESS)
        }
        UsersCommand::Unlock { id } => {
            call(
                &via,
                &subject,
                Method::POST,
                &format!("/users/{id}/unlock"),
                None,
            )
            .await?;
            println!("unlocked {id}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_json(value: &Value) -> anyhow::Result<ExitCode> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(ExitCode::SUCCESS)
}

/// The admin listener when it answers, else the store itself.
async fn connect(config: &Config, text: &str) -> anyhow::Result<Via> {
    if let Some(admin) = &config.admin
        && tokio::time::timeout(
            std::time::Duration::from_secs(2),
            tokio::net::TcpStream::connect(admin.listen),
        )
        .await
        .is_ok_and(|c| c.is_ok())
    {
        let key = match admin.token {
            SecretSource::File(_) => "admin.token_file",
            _ => "admin.token_env",
        };
        let token = crate::tokens::read_secret(key, &admin.token)?;
        return Ok(Via::Listener {
            base: format!("http://{}", admin.listen),
            token: String::from_utf8(token).context("the admin token is not UTF-8")?,
            client: Client::builder(TokioExecutor::new()).build_http(),
        });
    }
    let generation = crate::Daemon::offline(config, text).await.context(
        "no admin listener answers, and the store cannot be opened (is a daemon running without [admin]?)",
    )?;
    Ok(Via::Store(generation))
}

fn empty() -> Channel<Bytes, std::convert::Infallible> {
    Channel::new(1).1
}

/// One admin call, over the listener or directly.
async fn call(
    via: &Via,
    subject: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    match via {
        Via::Listener {
            base,
            token,
            client,
        } => {
            let (mut tx, channel) = Channel::new(1);
            if let Some(b) = body {
                tx.send_data(Bytes::from(b.to_string())).await.ok();
            }
            drop(tx);
            let req = Request::builder()
                .method(method)
                .uri(format!("{base}/admin/{subject}{path}"))
                .header(AUTHORIZATION, format!("Bearer {token}"))
                .header(CONTENT_TYPE, "application/json")
                .body(channel)?;
            let resp = client.request(req).await?;
            let status = resp.status();
            let bytes = resp.into_body().collect().await?.to_bytes();
            let value: Value = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes)?
            };
            if !status.is_success() {
                bail!("{status}: {value}");
            }
            Ok(value)
        }
        Via::Store(generation) => direct(generation, subject, method, path).await,
    }
}

async fn direct(
    generation: &Generation,
    subject: &str,
    method: Method,
    path: &str,
) -> anyhow::Result<Value> {
    let (route, query) = path.split_once('?').unwrap_or((path, ""));
    let parts: Vec<&str> = route.split('/').skip(1).collect();
    let store = &generation.services.store;
    match (method, parts.as_slice()) {
        (Method::GET, ["users"]) => {
            let q = crate::http::decode_query(Some(query));
            let text = |k: &str| q.get(k).and_then(Value::as_str).map(str::to_string);
            if let Some(identity) = text("identity") {
                let users = crate::admin::find(generation, subject, &identity).await?;
                let users: Vec<Value> = users
                    .iter()
                    .map(|u| crate::sessions::view(generation, subject, u))
                    .collect();
                return Ok(json!({ "users": users, "next": null }));
            }
            let limit = text("limit")
                .and_then(|l| l.parse().ok())
                .unwrap_or(50usize);
            let after = text("after").and_then(|a| a.parse().ok());
            let page = store.users_page(subject, after, limit).await?;
            let next = (page.len() == limit)
                .then(|| page.last().map(|u| u.id))
                .flatten();
            let users: Vec<Value> = page
                .iter()
                .map(|u| crate::sessions::view(generation, subject, u))
                .collect();
            Ok(json!({ "users": users, "next": next }))
        }
        (m, ["users", id, rest @ ..]) => {
            let id: Uuid = id.parse()?;
            let user = store.get(subject, id).await?.context("no such user")?;
            match (m, rest) {
                (Method::GET, []) => {
                    Ok(json!({ "user": crate::admin::detail(generation, subject, &user).await? }))
                }
                (Method::DELETE, []) => {
                    crate::admin::delete(generation, subject, id).await?;
                    Ok(Value::Null)
                }
                (Method::POST, ["unlock"]) => {
                    crate::admin::unlock(generation, subject, &user).await?;
                    Ok(Value::Null)
                }
                _ => bail!("unknown operation"),
            }
        }
        _ => bail!("unknown operation"),
    }
}

fn bar(len: Option<u64>, what: &str) -> ProgressBar {
    let bar = match len {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::new_spinner(),
    };
    let template = if len.is_some() {
        format!("{what} {{bar:40}} {{pos}}/{{len}} lines ({{per_sec}}, {{eta}} left)")
    } else {
        format!("{what} {{pos}} users ({{per_sec}})")
    };
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar
}

/// Counts the lines of `file` (for the progress bar).
fn count_lines(file: &Path) -> anyhow::Result<u64> {
    let reader = std::io::BufReader::new(std::fs::File::open(file)?);
    Ok(reader.split(b'\n').count() as u64)
}

async fn import(via: &Via, subject: &str, file: &Path, dry_run: bool) -> anyhow::Result<ExitCode> {
    let total = count_lines(file).with_context(|| format!("cannot read {}", file.display()))?;
    let progress = bar(Some(total), if dry_run { "checking" } else { "importing" });
    let mut stdout = std::io::stdout().lock();
    let mut failed = 0u64;
    let mut summary = Value::Null;
    let mut on_result = |value: Value, progress: &ProgressBar| -> anyhow::Result<()> {
        if value.get("summary").is_some() {
            summary = value;
            return Ok(());
        }
        progress.inc(1);
        if value.get("error").is_some() {
            failed += 1;
        }
        writeln!(stdout, "{value}")?;
        Ok(())
    };
    match via {
        Via::Listener {
            base,
            token,
            client,
        } => {
            let (mut tx, channel) = Channel::new(64);
            let path = file.to_path_buf();
            let reader = tokio::spawn(async move {
                let file = tokio::fs::File::open(path).await?;
                let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(file));
                let mut chunk = String::new();
                while let Some(line) = lines.next_line().await? {
                    chunk.push_str(&line);
                    chunk.push('\n');
                    if chunk.len() > 32 * 1024
                        && tx
                            .send_data(Bytes::from(std::mem::take(&mut chunk)))
                            .await
                            .is_err()
                    {
                        return Ok::<_, std::io::Error>(());
                    }
                }
                let _ = tx.send_data(Bytes::from(chunk)).await;
                Ok(())
            });
            let req = Request::post(format!(
                "{base}/admin/{subject}/users/import{}",
                if dry_run { "?dry_run=true" } else { "" }
            ))
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .header(CONTENT_TYPE, "application/x-ndjson")
            .body(channel)?;
            let resp = client.request(req).await?;
            if !resp.status().is_success() {
                let status = resp.status();
                let body = resp.into_body().collect().await?.to_bytes();
                bail!("{status}: {}", String::from_utf8_lossy(&body));
            }
            let mut body = resp.into_body();
            let mut buffer = Vec::new();
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame?.into_data() {
                    buffer.extend_from_slice(&data);
                    while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = buffer.drain(..=end).collect();
                        on_result(serde_json::from_slice(&line)?, &progress)?;
                    }
                }
            }
            reader.await??;
        }
        Via::Store(generation) => {
            let mut import = crate::admin::Import::new(generation, subject, dry_run);
            let reader = std::io::BufReader::new(std::fs::File::open(file)?);
            for line in reader.lines() {
                for (n, r) in import.line(&line?).await? {
                    on_result(r.to_json(n), &progress)?;
                }
            }
            for (n, r) in import.flush().await? {
                on_result(r.to_json(n), &progress)?;
            }
            import.log("command line");
            summary = import.summary();
        }
    }
    progress.finish_and_clear();
    eprintln!("{summary}");
    Ok(
        if failed > 0 || summary["summary"].get("stopped").is_some() {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        },
    )
}

async fn export(via: &Via, subject: &str) -> anyhow::Result<ExitCode> {
    let progress = bar(None, "exporting");
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    match via {
        Via::Listener {
            base,
            token,
            client,
        } => {
            let req = Request::get(format!("{base}/admin/{subject}/users/export"))
                .header(AUTHORIZATION, format!("Bearer {token}"))
                .body(empty())?;
            let resp = client.request(req).await?;
            if !resp.status().is_success() {
                bail!("{}", resp.status());
            }
            let mut body = resp.into_body();
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame?.into_data() {
                    progress.inc(data.iter().filter(|b| **b == b'\n').count() as u64);
                    stdout.write_all(&data)?;
                }
            }
        }
        Via::Store(generation) => {
            let mut after = None;
            loop {
                let page = generation
                    .services
                    .store
                    .users_page(subject, after, 500)
                    .await?;
                let Some(last) = page.last() else { break };
                after = Some(last.id);
                for user in &page {
                    writeln!(
                        stdout,
                        "{}",
                        crate::admin::export_line(generation, subject, user)
                    )?;
                    progress.inc(1);
                }
            }
        }
    }
    stdout.flush()?;
    progress.finish_and_clear();
    eprintln!("exported {} users", progress.position());
    Ok(ExitCode::SUCCESS)
}
