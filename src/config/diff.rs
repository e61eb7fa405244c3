//! `authd check --against`: what would change, key by key, between the config in force and a
//! new file, and whether each change applies live or needs a restart. The reload itself
//! refuses the same restart-only changes (see `restart::refused_changes`).

use std::fmt;

use super::Config;

use super::restart::RESTART_ONLY;

/// One difference between two files.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// TOML path of the key or table.
    pub path: String,
    pub before: Option<toml::Value>,
    pub after: Option<toml::Value>,
    pub applies: Applies,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applies {
    /// Takes effect at the next reload.
    Live,
    /// Needs a restart: a reload with this change is refused.
    Restart,
    /// Spelled differently, same value once defaults are applied (e.g. a default written out).
    NoEffect,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: &Option<toml::Value>| match v {
            None => "(absent)".to_string(),
            Some(toml::Value::Table(_)) => "{...}".to_string(),
            // A database URL may hold a password.
            Some(toml::Value::String(url)) if self.path == "store.url" => {
                format!("{:?}", crate::store_url::mask_url(url))
            }
            Some(v) => v.to_string(),
        };
        let sign = match (&self.before, &self.after) {
            (None, _) => '+',
            (_, None) => '-',
            _ => '~',
        };
        let applies = match self.applies {
            Applies::Live => "applies live",
            Applies::Restart => "NEEDS A RESTART (a reload is refused)",
            Applies::NoEffect => "no effect",
        };
        write!(
            f,
            "{sign} {}: {} -> {}   [{applies}]",
            self.path,
            show(&self.before),
            show(&self.after)
        )
    }
}

/// The changes to signing keys, in words, as a reload at `now` would make them (see
/// [`crate::tokens::diff`]).
pub fn key_changes(current: &Config, new: &Config, now: u64) -> Vec<String> {
    crate::tokens::diff::key_changes(current, new, now)
}

/// Lists the changes from `current` to `new`. Both texts must parse as TOML; `new_config` and
/// `current_config` are their validated forms (to tell a real restart-only change from a
/// default written out).
pub fn changes(
    current: &toml::Table,
    new: &toml::Table,
    current_config: &Config,
    new_config: &Config,
) -> Vec<Change> {
    let restart = super::refused_changes(current_config, new_config);
    let mut out = Vec::new();
    walk("", Some(current), Some(new), &mut out);
    for change in &mut out {
        if RESTART_ONLY.iter().any(|k| k.path == change.path) {
            change.applies = if restart.0.iter().any(|p| p.path == change.path) {
                Applies::Restart
            } else {
                Applies::NoEffect
            };
        }
    }
    out
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

fn walk(prefix: &str, a: Option<&toml::Table>, b: Option<&toml::Table>, out: &mut Vec<Change>) {
    let empty = toml::Table::new();
    let (a, b) = (a.unwrap_or(&empty), b.unwrap_or(&empty));
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let path = join(prefix, key);
        // Tables holding a restart-only key are always opened, so that such a key is
        // judged on its own; other added or removed tables are one change.
        let holds_restart_key = RESTART_ONLY
            .iter()
            .any(|k| k.path.starts_with(&format!("{path}.")));
        match (a.get(key), b.get(key)) {
            (Some(toml::Value::Table(x)), Some(toml::Value::Table(y))) => {
                walk(&path, Some(x), Some(y), out);
            }
            (
                x @ (None | Some(toml::Value::Table(_))),
                y @ (None | Some(toml::Value::Table(_))),
            ) if holds_restart_key && x != y => {
                walk(
                    &path,
                    x.and_then(toml::Value::as_table),
                    y.and_then(toml::Value::as_table),
                    out,
                );
            }
            (x, y) if x == y => {}
            (x, y) => out.push(Change {
                path,
                before: x.cloned(),
                after: y.cloned(),
                applies: Applies::Live,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (toml::Table, Config) {
        let table = toml::from_str(text).unwrap_or_else(|e| panic!("{e}"));
        let config = crate::registry::parse_config(text).unwrap_or_else(|e| panic!("{e}"));
        (table, config)
    }

    const BASE: &str = r#"
version = 1
[resources.user]
attributes.email = { type = "ci_string", unique = true }
[resources.user.strategies.password]
type = "password"
identity_field = "email"
hash = { algorithm = "bcrypt", cost = 10 }
"#;

    #[test]
    fn lists_each_change_with_how_it_applies() {
        let (a, ca) = parse(BASE);
        let new = BASE.replace("\"bcrypt\", cost = 10", "\"argon2id\"")
            + "[server]\nlisten = \"127.0.0.1:4000\"\n[store]\npath = \"other.redb\"\n[resources.admin]\n";
        let (b, cb) = parse(&new);
        let changes = changes(&a, &b, &ca, &cb);
        let find = |p: &str| changes.iter().find(|c| c.path == p).map(|c| c.applies);
        assert_eq!(
            find("resources.user.strategies.password.hash.algorithm"),
            Some(Applies::Live)
        );
        assert_eq!(
            find("resources.user.strategies.password.hash.cost"),
            Some(Applies::Live)
        );
        assert_eq!(find("resources.admin"), Some(Applies::Live));
        // The default address written out: no effect. A new store path: restart.
        assert_eq!(find("server.listen"), Some(Applies::NoEffect));
        assert_eq!(find("store.path"), Some(Applies::Restart));
    }
}
