//! The TOML file as serde types that mirror it, one per table. Defaults live here, each in
//! one function; validation (`super`) turns these into the validated types.
//!
//! The doc comments are the user documentation of each key.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Deserialize;

/// `[server]`: the HTTP listener. `listen` and `max_connections` need a restart to change.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub(crate) struct RawServer {
    /// Address and port to listen on. Default `127.0.0.1:4000`.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Largest request body accepted, in bytes (413 above). Default 16384.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Threads that hash passwords. Default: the number of cores.
    #[serde(default)]
    pub hash_workers: Option<usize>,
    /// Hashing jobs that may wait for a worker; past that, 503 with `Retry-After`.
    /// Default: 8 per worker.
    #[serde(default)]
    pub hash_queue: Option<usize>,
    /// Most connections served at once. Default 4096.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Most connections one client address (IPv6: one /64) may hold at once; more are closed
    /// at once. Default 64.
    #[serde(default = "default_max_connections_per_ip")]
    pub max_connections_per_ip: usize,
    /// How long a connection may wait for a complete request head, idle between requests
    /// included: past it the connection is closed and its slot freed. Default `"10s"`.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: String,
    /// How long a client may take to send a request body (408 past it). Default `"10s"`.
    #[serde(default = "default_body_timeout")]
    pub body_timeout: String,
    /// Peers (addresses or CIDR ranges) whose forwarding header is believed for the client's
    /// address. Default: none (the socket's peer address is the client).
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// The header the trusted proxies write: `"x-forwarded-for"` (default) or `"forwarded"`
    /// (RFC 7239). Only that one is read: the other passes through from the client.
    #[serde(default)]
    pub forwarded_header: crate::http::client_ip::ForwardedHeader,
    /// Origins (`"https://app.example.com"`: scheme, host, port) whose single-page apps may
    /// call the JSON API from a browser: CORS answers (preflights included) name them, allow
    /// the `Authorization` and `Content-Type` headers, and never credentials (cookies), so a
    /// session cookie of the pages is never sent cross-origin. Default: none (no CORS
    /// headers).
    #[serde(default)]
    pub cors_allowed_origins: Vec<String>,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            max_body_bytes: default_max_body(),
            hash_workers: None,
            hash_queue: None,
            max_connections: default_max_connections(),
            max_connections_per_ip: default_max_connections_per_ip(),
            idle_timeout: default_idle_timeout(),
            body_timeout: default_body_timeout(),
            trusted_proxies: Vec::new(),
            forwarded_header: Default::default(),
            cors_allowed_origins: Vec::new(),
        }
    }
}

/// `[store]`: where users and tokens are kept. `type`, `path`, `url`, `url_env`, `pool_size`
/// and `connect_timeout` need a restart to change.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStore {
    /// `"redb"`: one embedded file, one daemon (the default). `"postgres"`: a PostgreSQL
    /// database that several daemons share.
    #[serde(rename = "type", default = "default_store_type")]
    #[schemars(extend("enum" = ["redb", "postgres"]))]
    pub ty: String,
    /// With `redb`: path of the database file, created (mode 0600) if missing. Default
    /// `authd.redb`.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// With `postgres`: the database's URL, `postgres://USER[:PASSWORD]@HOST[:PORT]/DB`.
    /// `?sslmode=require` (or `verify-full`) connects with TLS and verifies the server's
    /// certificate against the usual public roots, or against the certificates in the file
    /// named by `&sslrootcert=/path/ca.pem`. A password in it is never logged or shown;
    /// prefer `url_env` to keep it out of the file.
    #[serde(default)]
    pub url: Option<String>,
    /// With `postgres`: name of an environment variable holding the URL (read at start).
    #[serde(default)]
    pub url_env: Option<String>,
    /// With `postgres`: connections this daemon keeps open at most. Default: 4 per core.
    #[serde(default)]
    pub pool_size: Option<usize>,
    /// With `postgres`: how long start-up waits for the database to answer before giving
    /// up with an error. Default `"30s"`.
    #[serde(default)]
    pub connect_timeout: Option<String>,
    /// With `redb`: the most memory, in MiB, the database's page cache may hold, whatever the
    /// file's size (1 to 65536). Reads of pages beyond it go to the operating system's file
    /// cache. Default `32`.
    #[serde(default)]
    pub cache_mib: Option<u64>,
}

impl Default for RawStore {
    fn default() -> Self {
        Self {
            ty: default_store_type(),
            path: None,
            url: None,
            url_env: None,
            pool_size: None,
            connect_timeout: None,
            cache_mib: None,
        }
    }
}

/// `[tokens]`: how tokens are signed, and the lifetime of session tokens.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub(crate) struct RawTokens {
    /// The `iss` claim written and required. Default `authd`.
    #[serde(default = "default_issuer")]
    pub issuer: String,
    /// `EdDSA` (Ed25519, the default), `ES256` (P-256), `RS256` (RSA): asymmetric, verifiable by
    /// other services with the public keys at `/.well-known/jwks.json`. Or `HS256`, `HS384`,
    /// `HS512`: HMAC with one secret, verifiable by authd only. Changing it by a reload is a
    /// rotation: tokens signed before keep verifying until they expire.
    #[serde(default = "default_algorithm")]
    #[schemars(extend("enum" = ["EdDSA", "ES256", "RS256", "HS256", "HS384", "HS512"]))]
    pub signing_algorithm: String,
    /// Name of an environment variable holding the HMAC signing secret (at least 32 random
    /// bytes: `openssl rand -base64 32`). With an asymmetric algorithm, the secret that still
    /// verifies HMAC tokens issued before the switch.
    #[serde(default)]
    pub signing_secret_env: Option<String>,
    /// Path of a file holding the HMAC signing secret (at least 32 random bytes; one trailing
    /// newline is ignored).
    #[serde(default)]
    pub signing_secret_file: Option<PathBuf>,
    /// Lifetime of session tokens. Default `14d`.
    #[serde(default = "default_token_lifetime")]
    pub token_lifetime: String,
    /// Audiences written to `aud` and required by authd's own checks, e.g. `["orders-api"]`.
    /// A resource may override it with its own `audience`. Default: none (no `aud`).
    #[serde(default)]
    pub audience: Vec<String>,
    /// For generated keys: make a new key this often (e.g. `"30d"`); it is published
    /// `publish_ahead` before it signs, and the key it replaces is retired. Default: never.
    #[serde(default)]
    pub rotate_every: Option<String>,
    /// How long a new generated key is in the JWKS before it signs (verifiers' caches must have
    /// it by then). Also bounds the JWKS `max-age` (half of it, at most 1h). Default `"1h"`.
    #[serde(default = "default_publish_ahead")]
    pub publish_ahead: String,
    /// Name of an environment variable holding the key-encryption key(s): base64 of 32 random
    /// bytes (`openssl rand -base64 32`), several separated by commas, the first sealing and
    /// all opening. Generated private keys (and strategy secrets such as TOTP seeds) are then
    /// stored encrypted. Default: stored in clear.
    #[serde(default)]
    pub key_encryption_key_env: Option<String>,
    /// Keys managed by the operator, as PEM files; rotated by editing the list.
    #[serde(default)]
    pub keys: Vec<RawKey>,
}

/// `[[tokens.keys]]`: one signing key of the operator's.
#[derive(Debug, Deserialize, JsonSchema)]
pub(super) struct RawKey {
    /// The `kid` of tokens it signs. Default: the RFC 7638 thumbprint of its public key.
    #[serde(default)]
    pub id: Option<String>,
    /// Path of the private key in PEM (PKCS#8 `PRIVATE KEY`, `EC PRIVATE KEY` or
    /// `RSA PRIVATE KEY`): Ed25519, P-256 or RSA (2048 bits or more).
    pub file: PathBuf,
    /// `"pending"` (published, not signing), `"active"` (signs: exactly one) or `"retired"`
    /// (verifies the tokens it signed until they expire). Default `"active"`.
    #[serde(default = "default_key_state")]
    pub state: String,
}

impl Default for RawTokens {
    fn default() -> Self {
        Self {
            issuer: default_issuer(),
            signing_algorithm: default_algorithm(),
            signing_secret_env: None,
            signing_secret_file: None,
            token_lifetime: default_token_lifetime(),
            audience: Vec::new(),
            rotate_every: None,
            publish_ahead: default_publish_ahead(),
            key_encryption_key_env: None,
            keys: Vec::new(),
        }
    }
}

/// `[introspection.clients.NAME]`: a service allowed to call `POST /auth/introspect` with
/// HTTP Basic (`NAME` and the secret).
#[derive(Debug, Deserialize, JsonSchema)]
pub(super) struct RawIntrospectionClient {
    /// Name of an environment variable holding the client's secret (at least 32 random bytes).
    #[serde(default)]
    pub secret_env: Option<String>,
    /// Path of a file holding the client's secret.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
}

/// `[introspection]`: RFC 7662 token introspection for the services behind authd.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub(super) struct RawIntrospection {
    /// The clients, by name.
    #[serde(default)]
    pub clients: std::collections::BTreeMap<String, RawIntrospectionClient>,
}

/// `[admin]`: the operators' listener (`/admin/...`). Without the table there is none.
/// `listen` needs a restart; the token is read again at each reload and SIGHUP.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub(crate) struct RawAdmin {
    /// Address and port of the admin listener, e.g. `127.0.0.1:4001`.
    pub listen: String,
    /// Name of an environment variable holding the admin token (at least 32 random bytes),
    /// sent as `Authorization: Bearer <token>`.
    #[serde(default)]
    pub token_env: Option<String>,
    /// Path of a file holding the admin token.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

/// `[resources.<name>.confirmation]`: users confirm an address (AshAuthentication's
/// confirmation add-on).
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub(crate) struct RawConfirmation {
    /// The attributes whose value must be confirmed (e.g. `["email"]`).
    pub monitor_fields: Vec<String>,
    /// Send a confirmation when a user is created. Default true.
    #[serde(default = "yes")]
    pub confirm_on_create: bool,
    /// Send a confirmation when a monitored field changes. Default true.
    #[serde(default = "yes")]
    pub confirm_on_update: bool,
    /// Keep a change of a monitored field pending until it is confirmed (the old value stays
    /// in force meanwhile). Default true.
    #[serde(default = "yes")]
    pub inhibit_updates: bool,
    /// A GET of a confirmation link changes nothing; a POST confirms (link scanners). Default
    /// true.
    #[serde(default = "yes")]
    pub require_interaction: bool,
    /// The name under which the user object shows when the user confirmed. Default
    /// `confirmed_at`.
    #[serde(default = "default_confirmed_at")]
    pub confirmed_at_field: String,
    /// How long a confirmation token works. Default `"3d"`.
    #[serde(default = "default_confirmation_lifetime")]
    pub token_lifetime: String,
    /// How confirmations reach the user (`log`, `webhook`, `smtp` with `confirm_url`).
    #[schemars(with = "authd_strategy_api::SenderSpec")]
    pub sender: toml::Value,
    /// Limits on `confirm/resend` per address and identity (`false` to turn off).
    #[serde(default)]
    #[schemars(with = "Option<authd_strategy_api::RequestLimitSetting>")]
    pub request_limit: Option<toml::Value>,
}

fn yes() -> bool {
    true
}
fn default_confirmed_at() -> String {
    "confirmed_at".into()
}
fn default_confirmation_lifetime() -> String {
    "3d".into()
}

/// `attributes.<name> = { ... }`.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub(crate) struct RawAttribute {
    /// `string`, `ci_string`, `integer` or `boolean`.
    #[serde(rename = "type")]
    #[schemars(extend("enum" = ["string", "ci_string", "integer", "boolean"]))]
    pub ty: String,
    /// No two users of the resource may share the value (compared as the type says).
    #[serde(default)]
    pub unique: bool,
    /// Registration fails without it.
    #[serde(default)]
    pub required: bool,
    /// Longest value in characters, for string types.
    #[serde(default)]
    pub max_length: Option<usize>,
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
fn default_max_connections_per_ip() -> usize {
    64
}
fn default_idle_timeout() -> String {
    "10s".into()
}
fn default_body_timeout() -> String {
    "10s".into()
}
fn default_store_type() -> String {
    "redb".into()
}
pub(super) fn default_store_path() -> PathBuf {
    PathBuf::from("authd.redb")
}
fn default_issuer() -> String {
    "authd".into()
}
fn default_algorithm() -> String {
    "EdDSA".into()
}
fn default_publish_ahead() -> String {
    "1h".into()
}
fn default_key_state() -> String {
    "active".into()
}
fn default_token_lifetime() -> String {
    "14d".into()
}

/// `[metrics]`: Prometheus metrics (`GET /metrics`, OpenMetrics text) on a listener of their
/// own. Without the table there is no metrics listener and nothing is measured. `listen`
/// needs a restart.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(deny_unknown_fields)]
pub(super) struct RawMetrics {
    /// Address and port of the metrics listener, e.g. `127.0.0.1:9464`. It answers without
    /// authentication: keep it on a private address. Its labels never hold an identity, a
    /// user id, an address or a token.
    pub listen: String,
}

/// `[log]`: how the daemon writes its log (to standard error). Needs a restart.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(deny_unknown_fields)]
pub(super) struct RawLog {
    /// `"text"` (default: one human-readable line per event) or `"json"` (one JSON object
    /// per line, with one `request` event per HTTP request: route, status, duration_ms,
    /// request_id). `authd serve --log-format` overrides it. Levels come from `RUST_LOG`
    /// (default `info`).
    #[serde(default)]
    #[schemars(extend("enum" = ["text", "json"]))]
    pub format: Option<String>,
}

/// `[events]`: account events POSTed to a webhook through the durable outbox, signed as the
/// Standard Webhooks specification says, each with a stable id (the `webhook-id` header).
/// Without the table no event is sent. The body is
/// `{"type", "id", "timestamp", "data": {"resource", "user_id", "strategy"}}`: never a
/// password, a hash, a token, an identity or an address.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(deny_unknown_fields)]
pub(super) struct RawEvents {
    /// Where events go: `{ type = "webhook", url = "http://...", secret_env = "NAME" }`, with
    /// the webhook sender's other keys (`secret_file`, `retry_base`, `give_up_after`,
    /// `timeout`). An event is given up 3 days after it happened at the latest.
    #[schemars(with = "authd_strategy_api::SenderSpec")]
    pub sender: toml::Value,
    /// The event types to send, among `user.registered`, `user.signed_in`,
    /// `user.sign_in_failed`, `user.locked_out`, `password.reset`, `password.changed`,
    /// `user.deleted`. Default: all of them.
    #[serde(default)]
    pub types: Option<Vec<String>>,
}
