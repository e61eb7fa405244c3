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
use serde::Deserialize;

/// The only file format version so far.
pub const VERSION: i64 = 1;

/// `[server]`: the HTTP listener. `listen` needs a restart to change.
#[derive(Debug, Deserialize)]
struct RawServer {
    /// Address and port to listen on. Default `127.0.0.1:4000`.
    #[serde(default = "default_listen")]
    listen: String,
    /// Largest request body accepted, in bytes (413 above). Default 16384.
    #[serde(default = "default_max_body")]
    max_body_bytes: usize,
    /// Threads that hash passwords. Default: the number of cores.
    #[serde(default)]
    hash_workers: Option<usize>,
    /// Hashing jobs that may wait for a worker; past that, 503 with `Retry-After`.
    /// Default: 8 per worker.
    #[serde(default)]
    hash_queue: Option<usize>,
    /// Most connections served at once. Default 4096.
    #[serde(default = "default_max_connections")]
    max_connections: usize,
    /// Peers (addresses or CIDR ranges) whose `X-Forwarded-For` header is believed for the
    /// client's address. Default: none (the socket's peer address is the client).
    #[serde(default)]
    trusted_proxies: Vec<String>,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            max_body_bytes: default_max_body(),
            hash_workers: None,
            hash_queue: None,
            max_connections: default_max_connections(),
            trusted_proxies: Vec::new(),
        }
    }
}

/// `[store]`: the redb database file. Needs a restart to change.
#[derive(Debug, Deserialize)]
struct RawStore {
    /// Path of the database file, created if missing. Default `authd.redb`.
    #[serde(default = "default_store_path")]
    path: PathBuf,
}

/// `[tokens]`: how tokens are signed, and the lifetime of session tokens.
#[derive(Debug, Deserialize)]
struct RawTokens {
    /// The `iss` claim written and required. Default `authd`.
    #[serde(default = "default_issuer")]
    issuer: String,
    /// `HS256` (default), `HS384` or `HS512`. Tokens signed otherwise are refused.
    #[serde(default = "default_algorithm")]
    signing_algorithm: String,
    /// Name of an environment variable holding the signing secret (at least 32 bytes).
    #[serde(default)]
    signing_secret_env: Option<String>,
    /// Path of a file holding the signing secret (at least 32 bytes; one trailing newline is
    /// ignored).
    #[serde(default)]
    signing_secret_file: Option<PathBuf>,
    /// Lifetime of session tokens. Default `14d`.
    #[serde(default = "default_token_lifetime")]
    token_lifetime: String,
}

impl Default for RawTokens {
    fn default() -> Self {
        Self {
            issuer: default_issuer(),
            signing_algorithm: default_algorithm(),
            signing_secret_env: None,
            signing_secret_file: None,
            token_lifetime: default_token_lifetime(),
        }
    }
}

/// `attributes.<name> = { ... }`.
#[derive(Debug, Deserialize)]
struct RawAttribute {
    /// `string`, `ci_string`, `integer` or `boolean`.
    #[serde(rename = "type")]
    ty: String,
    /// No two users of the resource may share the value (case-insensitively for `ci_string`).
    #[serde(default)]
    unique: bool,
    /// Registration fails without it.
    #[serde(default)]
    required: bool,
    /// Longest value in characters, for string types.
    #[serde(default)]
    max_length: Option<usize>,
}

fn default_listen() -> String {
    "127.0.0.1:4000".into()
}
fn default_max_body() -> usize {
    16 * 1024
}
fn default_max_connections() -> usize {
    4096
}
fn default_store_path() -> PathBuf {
    PathBuf::from("authd.redb")
}
fn default_issuer() -> String {
    "authd".into()
}
fn default_algorithm() -> String {
    "HS256".into()
}
fn default_token_lifetime() -> String {
    "14d".into()
}

/// A validated configuration.
#[derive(Debug)]
pub struct Config {
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub tokens: TokensConfig,
    pub resources: Vec<Resource>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub max_body_bytes: usize,
    pub hash_workers: usize,
    pub hash_queue: usize,
    pub max_connections: usize,
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    pub path: PathBuf,
}

/// HMAC algorithms for signing tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlgorithm {
    Hs256,
    Hs384,
    Hs512,
}

/// Where the signing secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Env(String),
    File(PathBuf),
    /// Generated once (256 random bits) and kept in the store.
    Generated,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokensConfig {
    pub issuer: String,
    pub algorithm: SigningAlgorithm,
    pub secret: SecretSource,
    pub token_lifetime: Duration,
}

/// A resource (a kind of user) and its strategies.
#[derive(Debug)]
pub struct Resource {
    pub spec: ResourceSpec,
    pub strategies: Vec<StrategyConfig>,
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
                let message = e.message().to_string();
                let location = e
                    .span()
                    .map(|span| {
                        let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                        format!("line {line}: ")
                    })
                    .unwrap_or_default();
                return Err(Problems(vec![Problem::new(
                    "",
                    format!("{location}TOML syntax: {message}"),
                )]));
            }
        };

        for key in doc.keys() {
            if !["version", "server", "store", "tokens", "resources"].contains(&key.as_str()) {
                problems.push(
                    key.clone(),
                    "unknown key (expected version, server, store, tokens, resources)",
                );
            }
        }
        match doc.remove("version") {
            None => problems.push("version", "missing: write `version = 1` at the top"),
            Some(toml::Value::Integer(VERSION)) => {}
            Some(other) => problems.push(
                "version",
                format!("unsupported version {other}; this authd reads version 1"),
            ),
        }

        let server = read_section::<RawServer>(&mut doc, "server", &mut problems)
            .map(|raw| check_server(raw, &mut problems));
        let store = read_section::<RawStore>(&mut doc, "store", &mut problems).map(|raw| {
            if raw.path.as_os_str().is_empty() {
                problems.push("store.path", "must not be empty");
            }
            StoreConfig { path: raw.path }
        });
        let tokens = read_section::<RawTokens>(&mut doc, "tokens", &mut problems)
            .map(|raw| check_tokens(raw, &mut problems));

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

        match (server, store, tokens) {
            (Some(server), Some(store), Some(tokens)) if problems.is_empty() => Ok(Config {
                server,
                store,
                tokens,
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

impl Default for RawStore {
    fn default() -> Self {
        Self {
            path: default_store_path(),
        }
    }
}

fn check_server(raw: RawServer, problems: &mut Problems) -> ServerConfig {
    let listen = raw.listen.parse().unwrap_or_else(|_| {
        problems.push(
            "server.listen",
            format!(
                "`{}` is not an address:port such as 127.0.0.1:4000",
                raw.listen
            ),
        );
        SocketAddr::from(([127, 0, 0, 1], 4000))
    });
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
    let mut trusted_proxies = Vec::new();
    for (i, entry) in raw.trusted_proxies.iter().enumerate() {
        let parsed = entry
            .parse::<ipnet::IpNet>()
            .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
        match parsed {
            Ok(net) => trusted_proxies.push(net),
            Err(_) => problems.push(
                format!("server.trusted_proxies[{i}]"),
                format!("`{entry}` is not an address or CIDR range such as 10.0.0.0/8"),
            ),
        }
    }
    ServerConfig {
        listen,
        max_body_bytes: raw.max_body_bytes,
        hash_workers,
        hash_queue,
        max_connections: raw.max_connections,
        trusted_proxies,
    }
}

fn check_tokens(raw: RawTokens, problems: &mut Problems) -> TokensConfig {
    let algorithm = match raw.signing_algorithm.as_str() {
        "HS256" => SigningAlgorithm::Hs256,
        "HS384" => SigningAlgorithm::Hs384,
        "HS512" => SigningAlgorithm::Hs512,
        other => {
            problems.push(
                "tokens.signing_algorithm",
                format!("`{other}` is not supported: use HS256, HS384 or HS512"),
            );
            SigningAlgorithm::Hs256
        }
    };
    let secret = match (raw.signing_secret_env, raw.signing_secret_file) {
        (Some(_), Some(_)) => {
            problems.push(
                "tokens.signing_secret_env",
                "set signing_secret_env or signing_secret_file, not both",
            );
            SecretSource::Generated
        }
        (Some(var), None) if var.is_empty() => {
            problems.push(
                "tokens.signing_secret_env",
                "must name an environment variable",
            );
            SecretSource::Generated
        }
        (Some(var), None) => SecretSource::Env(var),
        (None, Some(path)) => SecretSource::File(path),
        (None, None) => SecretSource::Generated,
    };
    if raw.issuer.is_empty() {
        problems.push("tokens.issuer", "must not be empty");
    }
    let token_lifetime = parse_lifetime(&raw.token_lifetime).unwrap_or_else(|m| {
        problems.push("tokens.token_lifetime", m);
        Duration::ZERO
    });
    TokensConfig {
        issuer: raw.issuer,
        algorithm,
        secret,
        token_lifetime,
    }
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
        if key != "attributes" && key != "strategies" {
            problems.push(
                format!("{path}.{key}"),
                "unknown key (expected attributes, strategies)",
            );
        }
    }

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
    let spec = ResourceSpec {
        name: name.to_string(),
        attributes,
    };

    let mut strategies = Vec::new();
    if let Some(value) = table.remove("strategies") {
        let toml::Value::Table(list) = value else {
            problems.push(
                format!("{path}.strategies"),
                "must be a table of strategies",
            );
            return None;
        };
        for (strategy_name, value) in list {
            let at = format!("{path}.strategies.{strategy_name}");
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

    Some(Resource { spec, strategies })
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
        other => {
            problems.push(
                format!("{at}.type"),
                format!("`{other}` is not a type: use string, ci_string, integer or boolean"),
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
