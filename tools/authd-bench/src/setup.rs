//! What the benchmark sends: the config the daemon is started with (the default one, or the
//! operator's with its listen address and store path replaced), the password strategy it drives
//! and the bodies of its requests. It reads a config only after `authd check` has accepted it,
//! and must not judge one itself: the daemon is the one authority on its config.

use std::path::Path;

use anyhow::Context as _;
use authd_password::{HashParams, PasswordConfig};
use authd_strategy_api::toml;
use authd_strategy_api::{AttributeSpec, AttributeType, ResourceSpec};
use bytes::Bytes;
use serde_json::{Map, Value, json};

/// A password strategy found in a config file, with what the benchmark needs to drive it.
pub(crate) struct PasswordSetup {
    pub(crate) subject: String,
    pub(crate) strategy: String,
    pub(crate) spec: ResourceSpec,
    pub(crate) config: PasswordConfig,
}

/// Every password strategy of a config's text, which `authd check` accepted. Only what the
/// benchmark needs is read: each resource's attributes (to fill in required ones at
/// registration) and each password strategy's table, read by the password crate itself.
pub(crate) fn password_strategies(text: &str) -> anyhow::Result<Vec<PasswordSetup>> {
    let doc: toml::Table = toml::from_str(text).context("the config is not valid TOML")?;
    let mut found = Vec::new();
    let Some(resources) = doc.get("resources").and_then(toml::Value::as_table) else {
        return Ok(found);
    };
    for (subject, resource) in resources {
        let mut attributes = Vec::new();
        if let Some(attrs) = resource.get("attributes").and_then(toml::Value::as_table) {
            for (name, value) in attrs {
                attributes.push(
                    attribute(name, value)
                        .with_context(|| format!("resources.{subject}.attributes.{name}"))?,
                );
            }
        }
        let spec = ResourceSpec {
            name: subject.clone(),
            attributes,
            confirmation: None,
        };
        let Some(strategies) = resource.get("strategies").and_then(toml::Value::as_table) else {
            continue;
        };
        for (name, strategy) in strategies {
            let Some(table) = strategy.as_table() else {
                continue;
            };
            if table.get("type").and_then(toml::Value::as_str) != Some("password") {
                continue;
            }
            let at = format!("resources.{subject}.strategies.{name}");
            let config = PasswordConfig::from_table(&at, &spec, table.clone())
                .map_err(|problems| anyhow::anyhow!("{at}: {problems}"))?;
            found.push(PasswordSetup {
                subject: subject.clone(),
                strategy: name.clone(),
                spec: spec.clone(),
                config,
            });
        }
    }
    Ok(found)
}

/// One `attributes.<name> = { type, unique, required, max_length }` entry.
fn attribute(name: &str, value: &toml::Value) -> anyhow::Result<AttributeSpec> {
    let ty = match value.get("type").and_then(toml::Value::as_str) {
        Some("string") => AttributeType::String,
        Some("ci_string") => AttributeType::CiString,
        Some("integer") => AttributeType::Integer,
        Some("boolean") => AttributeType::Boolean,
        other => anyhow::bail!("unknown attribute type {other:?}"),
    };
    let flag = |key: &str| {
        value
            .get(key)
            .and_then(toml::Value::as_bool)
            .unwrap_or(false)
    };
    let max_length = value
        .get("max_length")
        .and_then(toml::Value::as_integer)
        .map(usize::try_from)
        .transpose()
        .context("max_length")?;
    Ok(AttributeSpec {
        name: name.to_string(),
        ty,
        unique: flag("unique"),
        required: flag("required"),
        max_length,
    })
}

/// How the benchmark drives one password strategy.
pub(crate) struct Driver {
    pub(crate) subject: String,
    pub(crate) strategy: String,
    pub(crate) params: HashParams,
    pub(crate) identity_field: String,
    pub(crate) password_field: String,
    pub(crate) confirmation_field: Option<String>,
    /// Required attributes other than the identity, and their types.
    pub(crate) required: Vec<(String, AttributeType, bool, Option<usize>)>,
    pub(crate) password: String,
}

impl Driver {
    pub(crate) fn from_setup(setup: &PasswordSetup) -> Driver {
        let c = &setup.config;
        let required = setup
            .spec
            .attributes
            .iter()
            .filter(|a| a.required && a.name != c.identity_field)
            .map(|a| (a.name.clone(), a.ty, a.unique, a.max_length))
            .collect();
        let max = c
            .password_max_length
            .min(c.hash.max_password_bytes().unwrap_or(usize::MAX));
        let len = 24.max(c.password_min_length).min(max).max(1);
        let password: String = "bench-password-"
            .chars()
            .chain(std::iter::repeat('x'))
            .take(len)
            .collect();
        Driver {
            subject: setup.subject.clone(),
            strategy: setup.strategy.clone(),
            params: c.hash,
            identity_field: c.identity_field.clone(),
            password_field: c.password_field.clone(),
            confirmation_field: c
                .confirmation_required
                .then(|| c.password_confirmation_field.clone()),
            required,
            password,
        }
    }

    fn identity(i: usize) -> String {
        format!("bench{i}@example.com")
    }

    pub(crate) fn register_body(&self, i: usize) -> Bytes {
        let mut body = Map::new();
        body.insert(self.identity_field.clone(), json!(Self::identity(i)));
        body.insert(self.password_field.clone(), json!(self.password));
        if let Some(f) = &self.confirmation_field {
            body.insert(f.clone(), json!(self.password));
        }
        for (name, ty, unique, max_length) in &self.required {
            let value = match ty {
                AttributeType::String | AttributeType::CiString => {
                    let s = if *unique {
                        format!("b{i}")
                    } else {
                        "bench".into()
                    };
                    json!(
                        s.chars()
                            .take(max_length.unwrap_or(usize::MAX))
                            .collect::<String>()
                    )
                }
                AttributeType::Integer => json!(i),
                AttributeType::Boolean => json!(true),
            };
            body.insert(name.clone(), value);
        }
        Bytes::from(Value::Object(body).to_string())
    }

    pub(crate) fn sign_in_body(&self, i: usize) -> Bytes {
        Bytes::from(
            json!({
                self.identity_field.as_str(): Self::identity(i),
                self.password_field.as_str(): self.password,
            })
            .to_string(),
        )
    }
}

/// The default config: one `user` resource whose password strategy hashes with `params`.
///
/// `request_limit = false`: every registration comes from 127.0.0.1, and the default limit of
/// registrations per address would refuse most of them. `rate_limit` (sign-in failures) stays
/// on: its records are written on every sign-in, and are part of what is measured.
pub(crate) fn default_config(params: &HashParams) -> String {
    format!(
        "version = 1\n\
         [tokens]\nissuer = \"authd-bench\"\n\
         [resources.user]\nattributes.email = {{ type = \"ci_string\", unique = true }}\n\
         [resources.user.strategies.password]\ntype = \"password\"\nidentity_field = \"email\"\n\
         request_limit = false\nhash = {}\n",
        params.toml_value()
    )
}

/// Where the benchmarked daemon keeps its data.
#[derive(Debug, Clone)]
pub(crate) enum StoreTarget {
    /// A redb file at this path.
    Redb(std::path::PathBuf),
    /// A PostgreSQL database (a URL whose `search_path` names the run's own schema).
    Postgres(String),
}

impl StoreTarget {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            StoreTarget::Redb(_) => "redb",
            StoreTarget::Postgres(_) => "postgres",
        }
    }
}

/// `text` with its listen address and store replaced (and its signing algorithm, when
/// `signing_algorithm` is given).
pub(crate) fn relocate(
    text: &str,
    port: u16,
    target: &StoreTarget,
    signing_algorithm: Option<&str>,
) -> anyhow::Result<String> {
    let mut doc: toml::Table = toml::from_str(text).context("the config is not valid TOML")?;
    let section = |doc: &mut toml::Table, name: &str| -> anyhow::Result<toml::Table> {
        match doc.remove(name) {
            None => Ok(toml::Table::new()),
            Some(toml::Value::Table(t)) => Ok(t),
            Some(_) => anyhow::bail!("[{name}] is not a table"),
        }
    };
    let mut server = section(&mut doc, "server")?;
    server.insert(
        "listen".into(),
        toml::Value::String(format!("127.0.0.1:{port}")),
    );
    // Every client of the benchmark is 127.0.0.1: past the default cap of connections per
    // address, a flood's connections would be closed as one abusive client's are.
    server
        .entry("max_connections_per_ip")
        .or_insert(toml::Value::Integer(4096));
    doc.insert("server".into(), toml::Value::Table(server));
    let mut store = section(&mut doc, "store")?;
    match target {
        StoreTarget::Redb(db) => {
            for key in ["type", "url", "url_env", "pool_size", "connect_timeout"] {
                store.remove(key);
            }
            store.insert(
                "path".into(),
                toml::Value::String(db.to_string_lossy().into_owned()),
            );
        }
        StoreTarget::Postgres(url) => {
            store.remove("path");
            store.remove("url_env");
            store.insert("type".into(), toml::Value::String("postgres".into()));
            store.insert("url".into(), toml::Value::String(url.clone()));
        }
    }
    doc.insert("store".into(), toml::Value::Table(store));
    if let Some(alg) = signing_algorithm {
        let mut tokens = section(&mut doc, "tokens")?;
        tokens.insert(
            "signing_algorithm".into(),
            toml::Value::String(alg.to_string()),
        );
        doc.insert("tokens".into(), toml::Value::Table(tokens));
    }
    toml::to_string(&doc).context("cannot write the benchmark's config")
}

/// The config a run loads: `--config`'s file (validated by `authd check` first) or the
/// default one; with a label for reports.
pub(crate) fn config_text(
    config: Option<&Path>,
    algorithm: crate::Algorithm,
    authd: &Path,
) -> anyhow::Result<(String, String)> {
    match config {
        Some(path) => {
            crate::process::check_config(authd, path)?;
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            Ok((text, path.display().to_string()))
        }
        None => Ok((
            default_config(&algorithm.owasp()),
            format!("default ({})", algorithm.owasp()),
        )),
    }
}

/// The driver of the first password strategy of `text` with registration and sign-in.
pub(crate) fn driver_of(text: &str) -> anyhow::Result<Driver> {
    let setups = password_strategies(text)?;
    let setup = setups
        .iter()
        .find(|s| s.config.registration_enabled && s.config.sign_in_enabled)
        .context("the config has no password strategy with registration and sign-in enabled")?;
    Ok(Driver::from_setup(setup))
}

/// A daemon started for a run, in a folder of its own.
pub(crate) struct Launched {
    pub(crate) dir: crate::process::TempDir,
    pub(crate) daemon: crate::process::DaemonChild,
    /// `http://127.0.0.1:<port>`.
    pub(crate) base: String,
}

/// Writes `text` relocated to a free loopback port and `target` (`None`: a redb file in the
/// run's folder) into a folder of its own, and starts `authd serve` on it. The config and the
/// database are in separate folders: the daemon watches its config's folder.
pub(crate) fn launch(
    authd: &Path,
    text: &str,
    target: Option<StoreTarget>,
    signing_algorithm: Option<&str>,
) -> anyhow::Result<Launched> {
    let dir = crate::process::TempDir::new()?;
    let config_dir = dir.0.join("config");
    let data_dir = dir.0.join("data");
    std::fs::create_dir(&config_dir)?;
    std::fs::create_dir(&data_dir)?;
    let port = crate::process::free_port()?;
    let config_path = config_dir.join("authd.toml");
    let target = target.unwrap_or_else(|| StoreTarget::Redb(data_dir.join("bench.redb")));
    std::fs::write(
        &config_path,
        relocate(text, port, &target, signing_algorithm)?,
    )?;
    let daemon =
        crate::process::DaemonChild::spawn(authd, &config_path, &dir.0.join("daemon.log"))?;
    Ok(Launched {
        dir,
        daemon,
        base: format!("http://127.0.0.1:{port}"),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn relocation_replaces_only_the_listen_address_and_the_store() {
        let text = default_config(&HashParams::default());
        let out = relocate(
            &text,
            4321,
            &StoreTarget::Redb("/tmp/x y/bench.redb".into()),
            None,
        )
        .unwrap();
        let doc: toml::Table = toml::from_str(&out).unwrap();
        assert_eq!(doc["server"]["listen"].as_str(), Some("127.0.0.1:4321"));
        assert_eq!(doc["store"]["path"].as_str(), Some("/tmp/x y/bench.redb"));
        assert_eq!(doc["tokens"]["issuer"].as_str(), Some("authd-bench"));
        assert!(doc["tokens"].get("signing_algorithm").is_none());
        let out = relocate(&text, 1, &StoreTarget::Redb("/x".into()), Some("HS256")).unwrap();
        let doc: toml::Table = toml::from_str(&out).unwrap();
        assert_eq!(doc["tokens"]["signing_algorithm"].as_str(), Some("HS256"));
        let setups = password_strategies(&out).unwrap();
        assert_eq!(setups.len(), 1);
        assert_eq!(setups[0].config.hash, HashParams::default());

        let pg = relocate(
            &text,
            4321,
            &StoreTarget::Postgres("postgres://u@127.0.0.1/b".into()),
            None,
        )
        .unwrap();
        let doc: toml::Table = toml::from_str(&pg).unwrap();
        assert_eq!(doc["store"]["type"].as_str(), Some("postgres"));
        assert_eq!(
            doc["store"]["url"].as_str(),
            Some("postgres://u@127.0.0.1/b")
        );
        assert!(doc["store"].get("path").is_none());
    }

    #[test]
    fn required_attributes_are_filled_in_at_registration() {
        let text = "version = 1\n[resources.member]\n\
            attributes.email = { type = \"ci_string\", unique = true }\n\
            attributes.handle = { type = \"string\", unique = true, required = true, max_length = 3 }\n\
            attributes.age = { type = \"integer\", required = true }\n\
            [resources.member.strategies.pw]\ntype = \"password\"\nidentity_field = \"email\"\n\
            hash = { algorithm = \"bcrypt\", cost = 4 }\n";
        let setups = password_strategies(text).unwrap();
        assert_eq!(
            (setups[0].subject.as_str(), setups[0].strategy.as_str()),
            ("member", "pw")
        );
        let driver = Driver::from_setup(&setups[0]);
        let body: Value = serde_json::from_slice(&driver.register_body(12)).unwrap();
        assert_eq!(body["email"], "bench12@example.com");
        assert_eq!(body["handle"], "b12");
        assert_eq!(body["age"], 12);
    }

    #[test]
    fn bodies_carry_identity_password_and_confirmation() {
        let setups = password_strategies(&default_config(&HashParams::Bcrypt { cost: 4 })).unwrap();
        let driver = Driver::from_setup(&setups[0]);
        let body: Value = serde_json::from_slice(&driver.register_body(3)).unwrap();
        assert_eq!(body["email"], "bench3@example.com");
        assert_eq!(body["password"], body["password_confirmation"]);
        assert!(driver.password.len() >= 8 && driver.password.len() <= 72);
        let body: Value = serde_json::from_slice(&driver.sign_in_body(3)).unwrap();
        assert_eq!(body.as_object().map(Map::len), Some(2));
    }
}
