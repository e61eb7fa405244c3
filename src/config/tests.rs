//! Validation of whole files, without a daemon: every problem found at once, each with its
//! TOML path, and no value echoed.

use super::*;

fn problems(text: &str) -> Vec<(String, String)> {
    match crate::registry::parse_config(text) {
        Ok(_) => Vec::new(),
        Err(p) => p.0.into_iter().map(|p| (p.path, p.message)).collect(),
    }
}

fn paths(text: &str) -> Vec<String> {
    problems(text).into_iter().map(|(p, _)| p).collect()
}

const RESOURCE: &str = r#"
[resources.user]
attributes.email = { type = "ci_string", unique = true }
[resources.user.strategies.password]
type = "password"
identity_field = "email"
"#;

#[test]
fn a_minimal_file_validates_with_the_defaults() {
    let config = crate::registry::parse_config(&format!("version = 1\n{RESOURCE}")).unwrap();
    assert_eq!(config.server.listen.to_string(), "127.0.0.1:4000");
    assert_eq!(config.server.max_connections_per_ip, 64);
    assert_eq!(config.server.idle_timeout, Duration::from_secs(10));
    assert_eq!(config.server.body_timeout, Duration::from_secs(10));
    assert_eq!(
        config.store,
        StoreConfig::Redb {
            path: "authd.redb".into(),
            cache_mib: 32,
        }
    );
    assert!(config.admin.is_none());
    assert_eq!(config.tokens.secret, SecretSource::Generated);
}

#[test]
fn every_problem_of_every_table_is_reported_at_once() {
    let text = format!(
        "version = 1\nsurprise = 1\n[server]\nlisten = \"nowhere\"\nmax_connections_per_ip = 0\n\
         idle_timeout = \"1ms\"\ntrusted_proxies = [\"10.0.0.0/8\", \"not-a-net\"]\n\
         [store]\ntype = \"mongodb\"\n[tokens]\nsigning_algorithm = \"none\"\n\
         signing_secret_env = \"A\"\nsigning_secret_file = \"/f\"\n{RESOURCE}"
    );
    let found = paths(&text);
    for expected in [
        "surprise",
        "server.listen",
        "server.max_connections_per_ip",
        "server.idle_timeout",
        "server.trusted_proxies[1]",
        "store.type",
        "tokens.signing_algorithm",
        "tokens.signing_secret_env",
    ] {
        assert!(
            found.iter().any(|p| p == expected),
            "{expected} in {found:?}"
        );
    }
}

#[test]
fn problems_name_the_key_and_never_echo_the_value() {
    let secret = "sk_live_ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
    let text = format!(
        "version = 1\n[server]\nlisten = \"{secret}\"\nhash_workers = \"{secret}\"\n\
         [tokens]\nsigning_algorithm = \"{secret}\"\ntoken_lifetime = \"{secret}\"\n{RESOURCE}"
    );
    let all = problems(&text);
    assert!(all.len() >= 3, "{all:?}");
    for (path, message) in &all {
        assert!(!message.contains(secret), "{path}: {message}");
    }
}

#[test]
fn strategy_names_that_are_routes_of_the_resource_are_refused() {
    let text = format!(
        "version = 1\n{RESOURCE}[resources.user.strategies.me]\ntype = \"password\"\n\
         identity_field = \"email\"\nhashed_password_field = \"h2\"\n"
    );
    assert!(paths(&text).contains(&"resources.user.strategies.me".to_string()));
}

#[test]
fn the_admin_listener_needs_a_token_and_its_own_port() {
    let text = format!(
        "version = 1\n[server]\nlisten = \"127.0.0.1:4000\"\n[admin]\nlisten = \"127.0.0.1:4000\"\n{RESOURCE}"
    );
    let found = paths(&text);
    assert!(found.contains(&"admin.listen".to_string()), "{found:?}");
    assert!(found.contains(&"admin.token_env".to_string()), "{found:?}");
    let ok = format!(
        "version = 1\n[admin]\nlisten = \"127.0.0.1:4001\"\ntoken_file = \"/run/secrets/admin\"\n{RESOURCE}"
    );
    let config = crate::registry::parse_config(&ok).unwrap();
    assert_eq!(
        config.admin.map(|a| a.token),
        Some(SecretSource::File("/run/secrets/admin".into()))
    );
}

#[test]
fn restart_only_keys_are_one_list_for_reloads_and_check() {
    let base = format!("version = 1\n{RESOURCE}");
    let moved = format!(
        "version = 1\n[server]\nlisten = \"127.0.0.1:4999\"\n[store]\npath = \"other.redb\"\n{RESOURCE}"
    );
    let a = crate::registry::parse_config(&base).unwrap();
    let b = crate::registry::parse_config(&moved).unwrap();
    let refused: Vec<String> = refused_changes(&a, &b)
        .0
        .into_iter()
        .map(|p| p.path)
        .collect();
    assert_eq!(refused, ["server.listen", "store.path"]);
    for p in &refused {
        assert!(RESTART_ONLY.iter().any(|k| k.path == p));
    }
    assert!(refused_changes(&a, &a).is_empty());
}

#[test]
fn metrics_log_and_events_are_validated_and_the_listener_needs_a_restart() {
    let base = format!("version = 1\n{RESOURCE}");
    let on = format!(
        "version = 1\n[metrics]\nlisten = \"127.0.0.1:9464\"\n[log]\nformat = \"json\"\n{RESOURCE}"
    );
    let a = crate::registry::parse_config(&base).unwrap();
    let b = crate::registry::parse_config(&on).unwrap();
    assert!(a.metrics.is_none() && a.events.is_none());
    assert_eq!(b.log.format, super::LogFormat::Json);
    let refused: Vec<String> = refused_changes(&a, &b)
        .0
        .into_iter()
        .map(|p| p.path)
        .collect();
    assert_eq!(refused, ["metrics.listen", "log.format"]);

    let bad = format!(
        "version = 1\n[metrics]\nlisten = \"nowhere\"\n[log]\nformat = \"xml\"\n\
         [events]\nsender = {{ type = \"log\" }}\ntypes = []\n{RESOURCE}"
    );
    let found = paths(&bad);
    for path in [
        "metrics.listen",
        "log.format",
        "events.sender.type",
        "events.types",
    ] {
        assert!(found.contains(&path.to_string()), "{path} in {found:?}");
    }
}

#[test]
fn the_redb_page_cache_is_bounded_and_belongs_to_redb_only() {
    let config =
        crate::registry::parse_config(&format!("version = 1\n[store]\ncache_mib = 8\n{RESOURCE}"))
            .unwrap();
    assert!(matches!(
        config.store,
        StoreConfig::Redb { cache_mib: 8, .. }
    ));
    for bad in ["0", "65537"] {
        assert_eq!(
            paths(&format!(
                "version = 1\n[store]\ncache_mib = {bad}\n{RESOURCE}"
            )),
            vec!["store.cache_mib".to_string()],
            "{bad}"
        );
    }
    assert_eq!(
        paths(&format!(
            "version = 1\n[store]\ntype = \"postgres\"\nurl = \"postgres://u@h/d\"\ncache_mib = 8\n{RESOURCE}"
        )),
        vec!["store.cache_mib".to_string()]
    );
}
