//! The settings only a restart can change: one list, read by the reload (which refuses a file
//! that changes one) and by `authd check --against` (which says so).

use authd_strategy_api::Problems;

use super::{Config, DatabaseUrl, StoreConfig};

/// A key that needs a restart, and how to read its value from a validated config.
pub struct RestartKey {
    pub path: &'static str,
    value: fn(&Config) -> String,
}

fn listen(c: &Config) -> String {
    c.server.listen.to_string()
}
fn max_connections(c: &Config) -> String {
    c.server.max_connections.to_string()
}
fn store_type(c: &Config) -> String {
    match &c.store {
        StoreConfig::Redb { .. } => "redb".into(),
        StoreConfig::Postgres { .. } => "postgres".into(),
    }
}
fn store_path(c: &Config) -> String {
    match &c.store {
        StoreConfig::Redb { path, .. } => path.display().to_string(),
        StoreConfig::Postgres { .. } => String::new(),
    }
}
/// Compared, never shown (it may hold a password).
fn store_url(c: &Config) -> String {
    match &c.store {
        StoreConfig::Postgres {
            url: DatabaseUrl::Inline(url),
            ..
        } => url.clone(),
        _ => String::new(),
    }
}
fn store_url_env(c: &Config) -> String {
    match &c.store {
        StoreConfig::Postgres {
            url: DatabaseUrl::Env(var),
            ..
        } => var.clone(),
        _ => String::new(),
    }
}
/// The pool and the start-up wait are set when the store is opened, at start only.
fn store_pool_size(c: &Config) -> String {
    match &c.store {
        StoreConfig::Postgres { pool_size, .. } => pool_size.to_string(),
        StoreConfig::Redb { .. } => String::new(),
    }
}
fn store_connect_timeout(c: &Config) -> String {
    match &c.store {
        StoreConfig::Postgres {
            connect_timeout, ..
        } => format!("{connect_timeout:?}"),
        StoreConfig::Redb { .. } => String::new(),
    }
}
/// The page cache is sized when the file is opened.
fn store_cache_mib(c: &Config) -> String {
    match &c.store {
        StoreConfig::Redb { cache_mib, .. } => cache_mib.to_string(),
        StoreConfig::Postgres { .. } => String::new(),
    }
}
fn admin_listen(c: &Config) -> String {
    c.admin
        .as_ref()
        .map(|a| a.listen.to_string())
        .unwrap_or_default()
}

fn metrics_listen(c: &Config) -> String {
    c.metrics
        .as_ref()
        .map(|m| m.listen.to_string())
        .unwrap_or_default()
}
fn log_format(c: &Config) -> String {
    c.log.format.as_str().to_string()
}

/// Every key whose change needs a restart.
pub const RESTART_ONLY: &[RestartKey] = &[
    RestartKey {
        path: "server.listen",
        value: listen,
    },
    RestartKey {
        path: "server.max_connections",
        value: max_connections,
    },
    RestartKey {
        path: "store.type",
        value: store_type,
    },
    RestartKey {
        path: "store.path",
        value: store_path,
    },
    RestartKey {
        path: "store.url",
        value: store_url,
    },
    RestartKey {
        path: "store.url_env",
        value: store_url_env,
    },
    RestartKey {
        path: "store.pool_size",
        value: store_pool_size,
    },
    RestartKey {
        path: "store.connect_timeout",
        value: store_connect_timeout,
    },
    RestartKey {
        path: "store.cache_mib",
        value: store_cache_mib,
    },
    RestartKey {
        path: "admin.listen",
        value: admin_listen,
    },
    RestartKey {
        path: "metrics.listen",
        value: metrics_listen,
    },
    RestartKey {
        path: "log.format",
        value: log_format,
    },
];

/// The problems a reload from `old` to `new` would be refused for. Messages name the key,
/// never its values.
pub fn refused_changes(old: &Config, new: &Config) -> Problems {
    let mut problems = Problems::default();
    for key in RESTART_ONLY {
        if (key.value)(old) != (key.value)(new) {
            problems.push(key.path, "changed: needs a restart");
        }
    }
    problems
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn pg(store: &str) -> String {
        format!("version = 1\n[store]\ntype = \"postgres\"\n{store}\n")
    }

    #[test]
    fn a_postgres_store_is_validated_as_text_and_its_password_is_never_shown() {
        // Nothing listens there: validation does not connect.
        let text = pg(
            "url = \"postgres://authd:hunter2@db.invalid:5432/authd?sslmode=verify-full\"\npool_size = 7",
        );
        let config = crate::parse_config(&text).unwrap();
        let shown = config.store.describe();
        assert_eq!(
            shown,
            "postgres postgres://authd:***@db.invalid:5432/authd?sslmode=verify-full (pool 7)"
        );
        assert!(!format!("{:?}", config.store).contains("hunter2"));
        let StoreConfig::Postgres {
            connect_timeout, ..
        } = config.store
        else {
            panic!("not postgres")
        };
        assert_eq!(connect_timeout, std::time::Duration::from_secs(30));

        let env = crate::parse_config(&pg("url_env = \"AUTHD_DATABASE_URL\"")).unwrap();
        assert_eq!(
            env.store.describe().split(" (").next(),
            Some("postgres $AUTHD_DATABASE_URL")
        );
        assert!(matches!(env.store, StoreConfig::Postgres { pool_size, .. } if pool_size >= 4));
    }

    #[test]
    fn wrong_store_tables_name_each_key_without_echoing_the_url() {
        let problems = crate::parse_config(&pg(
            "url = \"mysql://root:hunter2@db/x\"\nurl_env = \"X\"\npath = \"a.redb\"\npool_size = 0\nconnect_timeout = \"2h\"",
        ))
        .unwrap_err();
        let text = problems.to_string();
        for key in [
            "store.url",
            "store.path",
            "store.pool_size",
            "store.connect_timeout",
        ] {
            assert!(text.contains(key), "{key} in {text}");
        }
        assert!(!text.contains("hunter2"), "{text}");
        let none = crate::parse_config(&pg("")).unwrap_err().to_string();
        assert!(none.contains("store.url_env"), "{none}");
        let redb = crate::parse_config("version = 1\n[store]\nurl = \"postgres://db/x\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            redb.contains("store.url: applies only to type = \"postgres\""),
            "{redb}"
        );
        let bad_mode = crate::parse_config(&pg("url = \"postgres://db/x?sslmode=maybe\""))
            .unwrap_err()
            .to_string();
        assert!(bad_mode.contains("sslmode"), "{bad_mode}");
    }

    #[test]
    fn changing_the_database_needs_a_restart_and_the_refusal_shows_no_password() {
        let a = crate::parse_config(&pg("url = \"postgres://authd:hunter2@db1/authd\"")).unwrap();
        let b = crate::parse_config(&pg(
            "url = \"postgres://authd:hunter3@db2/authd\"\npool_size = 9",
        ))
        .unwrap();
        let refused = refused_changes(&a, &b).to_string();
        assert!(refused.contains("store.url"), "{refused}");
        assert!(refused.contains("store.pool_size"), "{refused}");
        assert!(!refused.contains("hunter"), "{refused}");
        let redb = crate::parse_config("version = 1\n").unwrap();
        let moved = refused_changes(&redb, &a).to_string();
        assert!(moved.contains("store.type"), "{moved}");
        assert!(refused_changes(&a, &a).is_empty());

        // `authd check --against` shows the change with the password masked.
        let (ta, tb): (toml::Table, toml::Table) = (
            toml::from_str(&pg("url = \"postgres://authd:hunter2@db1/authd\"")).unwrap(),
            toml::from_str(&pg(
                "url = \"postgres://authd:hunter3@db2/authd\"\npool_size = 9",
            ))
            .unwrap(),
        );
        let listed: Vec<String> = crate::config::changes(&ta, &tb, &a, &b)
            .iter()
            .map(ToString::to_string)
            .collect();
        let listed = listed.join("\n");
        assert!(listed.contains("store.url"), "{listed}");
        assert!(!listed.contains("hunter"), "{listed}");
    }
}
