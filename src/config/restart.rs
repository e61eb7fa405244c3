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
        StoreConfig::Redb { path } => path.display().to_string(),
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
fn admin_listen(c: &Config) -> String {
    c.admin
        .as_ref()
        .map(|a| a.listen.to_string())
        .unwrap_or_default()
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
        path: "admin.listen",
        value: admin_listen,
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
