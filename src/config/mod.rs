//! The TOML file: raw serde types that mirror it, then validated types that the rest of the
//! daemon uses. Validation is pure (no file opened, no socket bound, no environment read) and
//! collects every problem, each with its TOML path, before returning.
//!
//! Strategy tables are validated by their plugin's factory, which the caller passes in (the
//! registry's list), so that this module does not know any strategy.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use authd_strategy_api::{
    AttributeSpec, AttributeType, Problem, Problems, ResourceSpec, TableReader, ValidatedStrategy,
    parse_lifetime,
};

mod diff;
pub mod file;
mod observe;
mod pages;
mod raw;
mod restart;
pub mod schema;
mod tokens;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;

pub use diff::{Applies, Change, changes, key_changes};
pub use observe::{EventsConfig, LogConfig, LogFormat, MetricsConfig};
pub use pages::{CookieConfig, PagesConfig, SameSite};
pub use restart::{RESTART_ONLY, refused_changes};
pub use tokens::{IntrospectionConfig, KeyConfig, KeyState, SigningAlgorithm, TokensConfig};

use raw::{
    RawAdmin, RawAttribute, RawConfirmation, RawIntrospection, RawServer, RawStore, RawTokens,
};
use tokens::{check_audience, check_introspection, check_tokens};

/// The only file format version so far.
pub const VERSION: i64 = 1;

/// The top-level keys of the file.
const TOP_LEVEL: &[&str] = &[
    "version",
    "server",
    "store",
    "tokens",
    "admin",
    "introspection",
    "pages",
    "metrics",
    "log",
    "events",
    "resources",
];

/// Strategy names that would clash with the resource's own routes (`/auth/<subject>/me`).
const RESERVED_STRATEGY_NAMES: &[&str] = &["me", "sign_out", "sign_out_all", "confirm"];

/// A validated configuration.
#[derive(Debug)]
pub struct Config {
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub tokens: TokensConfig,
    pub admin: Option<AdminConfig>,
    pub introspection: IntrospectionConfig,
    /// `[pages]`: the hosted pages, when the table is there.
    pub pages: Option<PagesConfig>,
    /// `[metrics]`: `None` without the table (no listener, nothing measured).
    pub metrics: Option<MetricsConfig>,
    pub log: LogConfig,
    /// `[events]`: `None` without the table (no event sent).
    pub events: Option<EventsConfig>,
    pub resources: Vec<Resource>,
}

impl Config {
    /// The longest lifetime of any token this config issues (sessions and every strategy's
    /// tokens): how long a retired key keeps verifying.
    pub fn longest_token_lifetime(&self) -> Duration {
        self.resources
            .iter()
            .flat_map(|r| &r.strategies)
            .filter_map(|s| s.validated.longest_token_lifetime())
            .fold(self.tokens.token_lifetime, Duration::max)
    }

    /// The audiences of `subject`'s tokens: the resource's own, else `tokens.audience`.
    pub fn audience_of(&self, subject: &str) -> &[String] {
        self.resources
            .iter()
            .find(|r| r.spec.name == subject)
            .and_then(|r| r.audience.as_deref())
            .unwrap_or(&self.tokens.audience)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub max_body_bytes: usize,
    pub hash_workers: usize,
    pub hash_queue: usize,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub idle_timeout: Duration,
    pub body_timeout: Duration,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub forwarded_header: crate::http::client_ip::ForwardedHeader,
    /// Origins whose pages may call the JSON API (CORS); empty: no CORS headers at all.
    pub cors_allowed_origins: Vec<String>,
}

/// Where users and tokens are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// One redb file.
    Redb {
        path: PathBuf,
        /// The most the page cache holds, in MiB.
        cache_mib: u64,
    },
    /// A PostgreSQL database, shared by several daemons.
    Postgres {
        url: DatabaseUrl,
        pool_size: usize,
        /// How long start-up waits for the database.
        connect_timeout: Duration,
    },
}

/// Where the PostgreSQL URL comes from. Its `Debug` form hides the password.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// `store.url`, as written.
    Inline(String),
    /// `store.url_env`: the variable, read at start.
    Env(String),
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DatabaseUrl::Inline(url) => write!(f, "Inline({:?})", crate::store_url::mask_url(url)),
            DatabaseUrl::Env(var) => write!(f, "Env({var:?})"),
        }
    }
}

impl StoreConfig {
    /// One line for `authd check` and logs (no secret: a password in the URL is masked).
    pub fn describe(&self) -> String {
        match self {
            StoreConfig::Redb { path, cache_mib } => {
                format!("redb {} (cache {cache_mib} MiB)", path.display())
            }
            StoreConfig::Postgres { url, pool_size, .. } => {
                let url = match url {
                    DatabaseUrl::Inline(url) => crate::store_url::mask_url(url),
                    DatabaseUrl::Env(var) => format!("${var}"),
                };
                format!("postgres {url} (pool {pool_size})")
            }
        }
    }
}

/// `[admin]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    /// Where the token is read from (at start, reload and SIGHUP).
    pub token: SecretSource,
}

/// Where a secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Env(String),
    File(PathBuf),
    /// Generated once (256 random bits) and kept in the store (signing keys only).
    Generated,
}

/// A resource (a kind of user) and its strategies.
#[derive(Debug)]
pub struct Resource {
    pub spec: ResourceSpec,
    /// `audience`: overrides `tokens.audience` for this resource's tokens.
    pub audience: Option<Vec<String>>,
    pub strategies: Vec<StrategyConfig>,
    pub confirmation: Option<ConfirmationConfig>,
}

/// `[resources.<name>.confirmation]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfirmationConfig {
    pub confirm_on_create: bool,
    pub confirm_on_update: bool,
    pub inhibit_updates: bool,
    pub require_interaction: bool,
    pub token_lifetime: Duration,
    pub sender: authd_strategy_api::SenderSpec,
    pub request_limit: Option<authd_strategy_api::RequestLimit>,
}

/// One validated strategy of a resource.
#[derive(Debug)]
pub struct StrategyConfig {
    pub name: String,
    pub type_name: String,
    pub validated: Box<dyn ValidatedStrategy>,
}

/// Validates one strategy table: `(path, strategy name, resource, type, table)`.
pub type StrategyValidator<'a> = &'a dyn Fn(
    &str,
    &str,
    &ResourceSpec,
    &str,
    toml::Table,
) -> Result<Box<dyn ValidatedStrategy>, Problems>;

/// Names that appear in URLs: resources, strategies.
fn is_url_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn is_field_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl Config {
    /// Parses and validates `text`, strategies through `validate_strategy`.
    ///
    /// # Errors
    /// Every problem found, each with its TOML path.
    pub fn parse(text: &str, validate_strategy: StrategyValidator<'_>) -> Result<Config, Problems> {
        let mut problems = Problems::default();
        let mut doc: toml::Table = match toml::from_str(text) {
            Ok(doc) => doc,
            Err(e) => {
                let location = e
                    .span()
                    .map(|span| {
                        let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                        format!("line {line}: ")
                    })
                    .unwrap_or_default();
                return Err(Problems(vec![Problem::new(
                    "",
                    format!("{location}TOML syntax: {}", e.message()),
                )]));
            }
        };

        for key in doc.keys() {
            if !TOP_LEVEL.contains(&key.as_str()) {
                problems.push(
                    key.clone(),
                    format!("unknown key (expected {})", TOP_LEVEL.join(", ")),
                );
            }
        }
        match doc.remove("version") {
            None => problems.push("version", "missing: write `version = 1` at the top"),
            Some(toml::Value::Integer(VERSION)) => {}
            Some(_) => problems.push("version", "unsupported version; this authd reads version 1"),
        }

        let server = read_section::<RawServer>(&mut doc, "server", &mut problems)
            .map(|raw| check_server(raw, &mut problems));
        let store = read_section::<RawStore>(&mut doc, "store", &mut problems)
            .map(|raw| check_store(raw, &mut problems));
        let tokens = read_section::<RawTokens>(&mut doc, "tokens", &mut problems)
            .map(|raw| check_tokens(raw, &mut problems));
        let introspection =
            read_section::<RawIntrospection>(&mut doc, "introspection", &mut problems)
                .map(|raw| check_introspection(raw, &mut problems));
        let admin = match doc.remove("admin") {
            None => Some(None),
            Some(value) => TableReader::read::<RawAdmin>("admin", value, &mut problems)
                .map(|raw| Some(check_admin(raw, &mut problems))),
        };
        let metrics = match doc.remove("metrics") {
            None => Some(None),
            Some(value) => TableReader::read::<raw::RawMetrics>("metrics", value, &mut problems)
                .map(|raw| Some(observe::check_metrics(raw, &mut problems))),
        };
        let log = read_section::<raw::RawLog>(&mut doc, "log", &mut problems)
            .map(|raw| observe::check_log(raw, &mut problems));
        let events = match doc.remove("events") {
            None => Some(None),
            Some(value) => TableReader::read::<raw::RawEvents>("events", value, &mut problems)
                .map(|raw| observe::check_events(raw, &mut problems)),
        };

        let pages = match doc.remove("pages") {
            None => None,
            Some(value) => {
                TableReader::read::<pages::RawPages>("pages", value, &mut problems).map(|raw| {
                    pages::check_pages(raw, server.as_ref().map(|s| s.listen), &mut problems)
                })
            }
        };

        let mut resources = Vec::new();
        match doc.remove("resources") {
            None => {}
            Some(toml::Value::Table(table)) => {
                for (name, value) in table {
                    if let Some(r) = check_resource(&name, value, validate_strategy, &mut problems)
                    {
                        resources.push(r);
                    }
                }
            }
            Some(_) => problems.push("resources", "must be a table of resources"),
        }
        check_claims(&resources, &mut problems);
        if let (Some(server), Some(Some(admin))) = (&server, &admin)
            && server.listen == admin.listen
            && server.listen.port() != 0
        {
            problems.push("admin.listen", "must differ from server.listen");
        }
        if let (Some(server), Some(Some(metrics))) = (&server, &metrics) {
            let admin_listen = admin.as_ref().and_then(|a| a.as_ref()).map(|a| a.listen);
            if metrics.listen.port() != 0
                && (metrics.listen == server.listen || Some(metrics.listen) == admin_listen)
            {
                problems.push(
                    "metrics.listen",
                    "must differ from server.listen and admin.listen",
                );
            }
        }

        match (
            server,
            store,
            tokens,
            admin,
            introspection,
            metrics,
            log,
            events,
        ) {
            (
                Some(server),
                Some(store),
                Some(tokens),
                Some(admin),
                Some(introspection),
                Some(metrics),
                Some(log),
                Some(events),
            ) if problems.is_empty() => Ok(Config {
                server,
                store,
                tokens,
                admin,
                introspection,
                pages,
                metrics,
                log,
                events,
                resources,
            }),
            _ => Err(problems),
        }
    }
}

/// Reads `[name]` (absent means defaults).
fn read_section<T: serde::de::DeserializeOwned + Default>(
    doc: &mut toml::Table,
    name: &str,
    problems: &mut Problems,
) -> Option<T> {
    match doc.remove(name) {
        None => Some(T::default()),
        Some(value) => TableReader::read::<T>(name, value, problems),
    }
}

fn check_listen(key: &str, text: &str, problems: &mut Problems) -> SocketAddr {
    text.parse().unwrap_or_else(|_| {
        problems.push(key, "is not an address:port such as 127.0.0.1:4000");
        SocketAddr::from(([127, 0, 0, 1], 4000))
    })
}

fn check_server(raw: RawServer, problems: &mut Problems) -> ServerConfig {
    let listen = check_listen("server.listen", &raw.listen, problems);
    if !(256..=16 * 1024 * 1024).contains(&raw.max_body_bytes) {
        problems.push("server.max_body_bytes", "must be between 256 and 16777216");
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let hash_workers = raw.hash_workers.unwrap_or(cores);
    if !(1..=1024).contains(&hash_workers) {
        problems.push("server.hash_workers", "must be between 1 and 1024");
    }
    let hash_queue = raw.hash_queue.unwrap_or(hash_workers * 8);
    if !(1..=1_000_000).contains(&hash_queue) {
        problems.push("server.hash_queue", "must be between 1 and 1000000");
    }
    if !(1..=1_000_000).contains(&raw.max_connections) {
        problems.push("server.max_connections", "must be between 1 and 1000000");
    }
    if !(1..=1_000_000).contains(&raw.max_connections_per_ip) {
        problems.push(
            "server.max_connections_per_ip",
            "must be between 1 and 1000000",
        );
    }
    let timeout =
        |key: &str, text: &str, problems: &mut Problems| match authd_strategy_api::parse_duration(
            text,
        ) {
            Ok(d) if d >= Duration::from_millis(100) && d <= Duration::from_secs(600) => d,
            Ok(_) => {
                problems.push(key, "must be between 100ms and 10m");
                Duration::from_secs(10)
            }
            Err(m) => {
                problems.push(key, m);
                Duration::from_secs(10)
            }
        };
    let idle_timeout = timeout("server.idle_timeout", &raw.idle_timeout, problems);
    let body_timeout = timeout("server.body_timeout", &raw.body_timeout, problems);
    let mut trusted_proxies = Vec::new();
    for (i, entry) in raw.trusted_proxies.iter().enumerate() {
        let parsed = entry
            .parse::<ipnet::IpNet>()
            .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
        match parsed {
            Ok(net) => trusted_proxies.push(net),
            Err(_) => problems.push(
                format!("server.trusted_proxies[{i}]"),
                "is not an address or CIDR range such as 10.0.0.0/8",
            ),
        }
    }
    let mut cors_allowed_origins = Vec::new();
    for (i, origin) in raw.cors_allowed_origins.iter().enumerate() {
        match url::Url::parse(origin) {
            Ok(u)
                if matches!(u.scheme(), "http" | "https")
                    && u.host_str().is_some()
                    && u.path() == "/"
                    && !origin.ends_with('/')
                    && u.username().is_empty()
                    && u.query().is_none() =>
            {
                cors_allowed_origins.push(origin.clone());
            }
            _ => problems.push(
                format!("server.cors_allowed_origins[{i}]"),
                "must be an origin such as \"https://app.example.com\" (scheme, host and port only; `*` is not accepted)",
            ),
        }
    }
    ServerConfig {
        listen,
        max_body_bytes: raw.max_body_bytes,
        hash_workers,
        hash_queue,
        max_connections: raw.max_connections,
        max_connections_per_ip: raw.max_connections_per_ip,
        idle_timeout,
        body_timeout,
        trusted_proxies,
        forwarded_header: raw.forwarded_header,
        cors_allowed_origins,
    }
}

/// `store.cache_mib` when not set.
pub const DEFAULT_CACHE_MIB: u64 = 32;

fn check_store(raw: RawStore, problems: &mut Problems) -> StoreConfig {
    let only_postgres = |key: &str, set: bool, problems: &mut Problems| {
        if set {
            problems.push(
                format!("store.{key}"),
                "applies only to type = \"postgres\"",
            );
        }
    };
    match raw.ty.as_str() {
        "redb" => {
            only_postgres("url", raw.url.is_some(), problems);
            only_postgres("url_env", raw.url_env.is_some(), problems);
            only_postgres("pool_size", raw.pool_size.is_some(), problems);
            only_postgres("connect_timeout", raw.connect_timeout.is_some(), problems);
            let path = raw.path.unwrap_or_else(raw::default_store_path);
            if path.as_os_str().is_empty() {
                problems.push("store.path", "must not be empty");
            }
            let cache_mib = raw.cache_mib.unwrap_or(DEFAULT_CACHE_MIB);
            if !(1..=65536).contains(&cache_mib) {
                problems.push("store.cache_mib", "must be between 1 and 65536");
            }
            StoreConfig::Redb { path, cache_mib }
        }
        "postgres" => {
            if raw.path.is_some() {
                problems.push("store.path", "applies only to type = \"redb\"");
            }
            if raw.cache_mib.is_some() {
                problems.push("store.cache_mib", "applies only to type = \"redb\"");
            }
            let url = match (raw.url, raw.url_env) {
                (Some(_), Some(_)) => {
                    problems.push("store.url", "set store.url or store.url_env, not both");
                    DatabaseUrl::Env(String::new())
                }
                (Some(url), None) => {
                    // Checked as text only: nothing is connected to.
                    if let Err(why) = crate::store_url::check_url(&url) {
                        problems.push("store.url", why);
                    }
                    DatabaseUrl::Inline(url)
                }
                (None, Some(var)) if var.is_empty() => {
                    problems.push("store.url_env", "must name an environment variable");
                    DatabaseUrl::Env(var)
                }
                (None, Some(var)) => DatabaseUrl::Env(var),
                (None, None) => {
                    problems.push(
                        "store.url_env",
                        "type = \"postgres\" needs the database: set url_env (or url)",
                    );
                    DatabaseUrl::Env(String::new())
                }
            };
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            let pool_size = raw.pool_size.unwrap_or(4 * cores);
            if !(1..=1000).contains(&pool_size) {
                problems.push("store.pool_size", "must be between 1 and 1000");
            }
            let connect_timeout = match raw
                .connect_timeout
                .as_deref()
                .map(authd_strategy_api::parse_duration)
            {
                None => Duration::from_secs(30),
                Some(Ok(d)) if d <= Duration::from_secs(3600) => d,
                Some(Ok(_)) => {
                    problems.push("store.connect_timeout", "must be at most 1h");
                    Duration::from_secs(30)
                }
                Some(Err(m)) => {
                    problems.push("store.connect_timeout", m);
                    Duration::from_secs(30)
                }
            };
            StoreConfig::Postgres {
                url,
                pool_size,
                connect_timeout,
            }
        }
        _ => {
            problems.push(
                "store.type",
                "is not a store type: use \"redb\" or \"postgres\"",
            );
            StoreConfig::Redb {
                path: raw::default_store_path(),
                cache_mib: DEFAULT_CACHE_MIB,
            }
        }
    }
}

/// Reads `<table>.<key>_env` / `<table>.<key>_file` into a source.
fn secret_source(
    env_key: &str,
    file_key: &str,
    env: Option<String>,
    file: Option<PathBuf>,
    problems: &mut Problems,
) -> Option<SecretSource> {
    match (env, file) {
        (Some(_), Some(_)) => {
            problems.push(env_key, format!("set {env_key} or {file_key}, not both"));
            None
        }
        (Some(var), None) if var.is_empty() => {
            problems.push(env_key, "must name an environment variable");
            None
        }
        (Some(var), None) => Some(SecretSource::Env(var)),
        (None, Some(path)) if path.as_os_str().is_empty() => {
            problems.push(file_key, "must not be empty");
            None
        }
        (None, Some(path)) => Some(SecretSource::File(path)),
        (None, None) => None,
    }
}

fn check_admin(raw: RawAdmin, problems: &mut Problems) -> AdminConfig {
    let listen = check_listen("admin.listen", &raw.listen, problems);
    let token = secret_source(
        "admin.token_env",
        "admin.token_file",
        raw.token_env,
        raw.token_file,
        problems,
    )
    .unwrap_or_else(|| {
        problems.push(
            "admin.token_env",
            "the admin API needs a token: set token_env or token_file",
        );
        SecretSource::Generated
    });
    AdminConfig { listen, token }
}

fn check_resource(
    name: &str,
    value: toml::Value,
    validate_strategy: StrategyValidator<'_>,
    problems: &mut Problems,
) -> Option<Resource> {
    let path = format!("resources.{name}");
    if !is_url_name(name) {
        problems.push(
            path.clone(),
            "resource names appear in URLs: use lower-case letters, digits and _ (at most 64)",
        );
    }
    let toml::Value::Table(mut table) = value else {
        problems.push(path, "must be a table");
        return None;
    };
    for key in table.keys() {
        if !["attributes", "strategies", "confirmation", "audience"].contains(&key.as_str()) {
            problems.push(
                format!("{path}.{key}"),
                "unknown key (expected attributes, strategies, confirmation, audience)",
            );
        }
    }
    let audience = match table.remove("audience") {
        None => None,
        Some(value) => {
            let at = format!("{path}.audience");
            TableReader::read::<Vec<String>>(&at, value, problems)
                .map(|list| check_audience(&at, list, problems))
        }
    };

    let mut attributes = Vec::new();
    let mut ok = true;
    if let Some(value) = table.remove("attributes") {
        let toml::Value::Table(attrs) = value else {
            problems.push(format!("{path}.attributes"), "must be a table");
            return None;
        };
        for (attr_name, value) in attrs {
            let at = format!("{path}.attributes.{attr_name}");
            if !is_field_name(&attr_name) || attr_name == "id" {
                problems.push(
                    at.clone(),
                    "attribute names use letters, digits, _ and - (at most 64); `id` is reserved",
                );
            }
            match TableReader::read::<RawAttribute>(&at, value, problems) {
                Some(raw) => match check_attribute(&at, attr_name, raw, problems) {
                    Some(a) => attributes.push(a),
                    None => ok = false,
                },
                None => ok = false,
            }
        }
    }
    let mut spec = ResourceSpec {
        name: name.to_string(),
        attributes,
        confirmation: None,
    };
    let confirmation = match table.remove("confirmation") {
        None => None,
        Some(value) => {
            let at = format!("{path}.confirmation");
            TableReader::read::<RawConfirmation>(&at, value, problems)
                .and_then(|raw| check_confirmation(&at, raw, &mut spec, problems))
        }
    };

    let mut strategies = Vec::new();
    // Every strategy table of the resource, valid or not (for `required_after`).
    let mut declared = std::collections::BTreeSet::new();
    if let Some(value) = table.remove("strategies") {
        let toml::Value::Table(list) = value else {
            problems.push(
                format!("{path}.strategies"),
                "must be a table of strategies",
            );
            return None;
        };
        declared.extend(list.keys().cloned());
        for (strategy_name, value) in list {
            let at = format!("{path}.strategies.{strategy_name}");
            if RESERVED_STRATEGY_NAMES.contains(&strategy_name.as_str()) {
                problems.push(
                    at.clone(),
                    format!(
                        "`{strategy_name}` is a route of the resource itself; name the strategy otherwise"
                    ),
                );
            }
            if !is_url_name(&strategy_name) {
                problems.push(
                    at.clone(),
                    "strategy names appear in URLs: use lower-case letters, digits and _ (at most 64)",
                );
            }
            let toml::Value::Table(table) = value else {
                problems.push(at, "must be a table");
                continue;
            };
            let type_name = match table.get("type") {
                Some(toml::Value::String(t)) => t.clone(),
                Some(_) => {
                    problems.push(format!("{at}.type"), "must be a string");
                    continue;
                }
                None => {
                    problems.push(
                        format!("{at}.type"),
                        "missing: every strategy needs a type, e.g. type = \"password\"",
                    );
                    continue;
                }
            };
            if !ok {
                // Attributes are broken: a strategy check against them would only add noise.
                continue;
            }
            match validate_strategy(&at, &strategy_name, &spec, &type_name, table) {
                Ok(validated) => strategies.push(StrategyConfig {
                    name: strategy_name,
                    type_name,
                    validated,
                }),
                Err(more) => problems.extend(more),
            }
        }
    }

    // Two strategies of one resource must not write the same secret field.
    let mut owners: BTreeMap<String, &str> = BTreeMap::new();
    for s in &strategies {
        for field in s.validated.secret_fields() {
            if let Some(other) = owners.insert(field.clone(), &s.name) {
                problems.push(
                    format!("{path}.strategies.{}", s.name),
                    format!("stores its secret in `{field}`, as strategy `{other}` does; give each its own field"),
                );
            }
        }
    }

    // A second factor continues other strategies of its own resource.
    for s in &strategies {
        for after in s.validated.continues_after() {
            if after == s.name || !declared.contains(&after) {
                problems.push(
                    format!("{path}.strategies.{}.required_after", s.name),
                    format!("names `{after}`, which is not another strategy of resource `{name}`"),
                );
            }
        }
    }

    Some(Resource {
        spec,
        audience,
        strategies,
        confirmation,
    })
}

/// What strategies take for themselves across the whole config (API key prefixes): two claims
/// of one namespace that overlap are refused, the problem at the later one's key naming the
/// earlier one's (never the value).
fn check_claims(resources: &[Resource], problems: &mut Problems) {
    let mut seen: Vec<(String, authd_strategy_api::Claim)> = Vec::new();
    for resource in resources {
        for s in &resource.strategies {
            for claim in s.validated.claims() {
                let at = format!(
                    "resources.{}.strategies.{}.{}",
                    resource.spec.name, s.name, claim.key
                );
                if let Some((other, _)) = seen.iter().find(|(_, c)| c.clashes_with(&claim)) {
                    problems.push(
                        at.clone(),
                        format!(
                            "takes {} that {other} takes too: give each strategy its own",
                            claim.namespace
                        ),
                    );
                }
                seen.push((at, claim));
            }
        }
    }
}

fn check_confirmation(
    at: &str,
    raw: RawConfirmation,
    spec: &mut ResourceSpec,
    problems: &mut Problems,
) -> Option<ConfirmationConfig> {
    let key = |k: &str| format!("{at}.{k}");
    if raw.monitor_fields.is_empty() {
        problems.push(key("monitor_fields"), "must name at least one attribute");
    }
    for (i, field) in raw.monitor_fields.iter().enumerate() {
        match spec.attribute(field) {
            Some(a) if matches!(a.ty, AttributeType::String | AttributeType::CiString) => {}
            Some(_) => problems.push(
                format!("{at}.monitor_fields[{i}]"),
                "must be a string or ci_string attribute",
            ),
            None => problems.push(
                format!("{at}.monitor_fields[{i}]"),
                format!("is not an attribute of resource `{}`", spec.name),
            ),
        }
    }
    if !raw
        .monitor_fields
        .iter()
        .any(|f| spec.attribute(f).is_some_and(|a| a.unique))
    {
        problems.push(
            key("monitor_fields"),
            "at least one monitored field must be a unique attribute (confirm/resend looks users up by it)",
        );
    }
    if !is_field_name(&raw.confirmed_at_field)
        || raw.confirmed_at_field == "id"
        || spec.attribute(&raw.confirmed_at_field).is_some()
    {
        problems.push(
            key("confirmed_at_field"),
            "must be a field name that is neither `id` nor a declared attribute",
        );
    }
    let token_lifetime = parse_lifetime(&raw.token_lifetime).unwrap_or_else(|m| {
        problems.push(key("token_lifetime"), m);
        Duration::ZERO
    });
    let sender =
        TableReader::read::<authd_strategy_api::SenderSpec>(&key("sender"), raw.sender, problems)?;
    spec.confirmation = Some(authd_strategy_api::ConfirmationSpec {
        monitor_fields: raw.monitor_fields,
        confirmed_at_field: raw.confirmed_at_field,
    });
    if let Err(p) = sender.validate(
        &key("sender"),
        spec,
        &[authd_strategy_api::kinds::CONFIRMATION],
    ) {
        problems.extend(p);
    }
    let request_limit = authd_strategy_api::RequestLimit::read(
        &key("request_limit"),
        raw.request_limit,
        authd_strategy_api::RequestLimit::DEFAULT,
        problems,
    );
    Some(ConfirmationConfig {
        confirm_on_create: raw.confirm_on_create,
        confirm_on_update: raw.confirm_on_update,
        inhibit_updates: raw.inhibit_updates,
        require_interaction: raw.require_interaction,
        token_lifetime,
        sender,
        request_limit,
    })
}

fn check_attribute(
    at: &str,
    name: String,
    raw: RawAttribute,
    problems: &mut Problems,
) -> Option<AttributeSpec> {
    let ty = match raw.ty.as_str() {
        "string" => AttributeType::String,
        "ci_string" => AttributeType::CiString,
        "integer" => AttributeType::Integer,
        "boolean" => AttributeType::Boolean,
        _ => {
            problems.push(
                format!("{at}.type"),
                "is not a type: use string, ci_string, integer or boolean",
            );
            return None;
        }
    };
    if let Some(max) = raw.max_length {
        if !matches!(ty, AttributeType::String | AttributeType::CiString) {
            problems.push(
                format!("{at}.max_length"),
                "applies only to string and ci_string",
            );
        } else if max == 0 {
            problems.push(format!("{at}.max_length"), "must be at least 1");
        }
    }
    Some(AttributeSpec {
        name,
        ty,
        unique: raw.unique,
        required: raw.required,
        max_length: raw.max_length,
    })
}
