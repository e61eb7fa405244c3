//! The registry: which strategy types exist, and the live routing table built from a
//! validated config.
//!
//! Adding a strategy type is one line in [`FACTORIES`]. The registry knows no HTTP: the server
//! asks it for `(subject, strategy)` and gets a live [`Strategy`].

use std::collections::BTreeMap;
use std::sync::Arc;

use authd_strategy_api::{
    PhaseDoc, PhaseSpec, Problems, ResourceSpec, Services, Strategy, StrategyFactory,
    ValidatedStrategy,
};

use crate::config::{Config, ConfirmationConfig};

/// Every strategy type authd knows, by its `type` name.
pub const FACTORIES: &[&dyn StrategyFactory] = &[
    &authd_password::Factory,
    &authd_magic_link::Factory,
    &authd_api_key::Factory,
    &authd_totp::Factory,
];

/// Validates one strategy table with the factory its `type` names.
///
/// # Errors
/// An unknown type, or every problem the factory found.
pub fn validate_strategy(
    path: &str,
    name: &str,
    resource: &ResourceSpec,
    type_name: &str,
    table: authd_strategy_api::toml::Table,
) -> Result<Box<dyn ValidatedStrategy>, Problems> {
    match FACTORIES.iter().find(|f| f.type_name() == type_name) {
        Some(factory) => factory.validate(path, name, resource, table),
        None => {
            let known: Vec<_> = FACTORIES.iter().map(|f| f.type_name()).collect();
            let mut problems = Problems::default();
            problems.push(
                format!("{path}.type"),
                format!(
                    "unknown strategy type `{type_name}` (known: {})",
                    known.join(", ")
                ),
            );
            Err(problems)
        }
    }
}

/// Parses and validates a whole file with the registry's factories.
///
/// # Errors
/// Every problem found.
pub fn parse_config(text: &str) -> Result<Config, Problems> {
    Config::parse(text, &validate_strategy)
}

/// One route of a strategy phase, for listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub methods: Vec<&'static str>,
    pub path: String,
}

/// Lists every route a config serves, in a stable order.
pub fn routes(config: &Config) -> Vec<Route> {
    let mut out = vec![
        Route {
            methods: vec!["GET"],
            path: "/healthz".into(),
        },
        Route {
            methods: vec!["GET"],
            path: "/.well-known/jwks.json".into(),
        },
    ];
    if !config.introspection.clients.is_empty() {
        out.push(Route {
            methods: vec!["POST"],
            path: "/auth/introspect".into(),
        });
    }
    for resource in &config.resources {
        let subject = &resource.spec.name;
        out.push(Route {
            methods: vec!["GET"],
            path: format!("/auth/{subject}/me"),
        });
        out.push(Route {
            methods: vec!["PATCH", "DELETE"],
            path: format!("/auth/{subject}/me"),
        });
        out.push(Route {
            methods: vec!["POST"],
            path: format!("/auth/{subject}/sign_out"),
        });
        out.push(Route {
            methods: vec!["POST"],
            path: format!("/auth/{subject}/sign_out_all"),
        });
        if resource.confirmation.is_some() {
            out.push(Route {
                methods: vec!["GET", "POST"],
                path: format!("/auth/{subject}/confirm"),
            });
            out.push(Route {
                methods: vec!["POST"],
                path: format!("/auth/{subject}/confirm/resend"),
            });
        }
        for strategy in &resource.strategies {
            for phase in strategy.validated.phases() {
                out.push(Route {
                    methods: phase.methods.iter().map(|m| m.as_str()).collect(),
                    path: format!("/auth/{subject}/{}{}", strategy.name, phase.pattern()),
                });
            }
        }
    }
    out
}

/// The live strategies of one config: what a request snapshot holds from start to end.
pub struct Registry {
    resources: BTreeMap<String, ResourceSpec>,
    strategies: BTreeMap<(String, String), Arc<dyn Strategy>>,
    confirmations: BTreeMap<String, Arc<LiveConfirmation>>,
    /// Each strategy's `type` and phase documents (what its phases take), for the pages.
    described: BTreeMap<(String, String), Described>,
}

/// What a strategy says of itself: its `type` and its phases' documents.
pub struct Described {
    pub type_name: String,
    pub docs: Vec<PhaseDoc>,
}

/// A resource's confirmation settings with their live sender.
pub struct LiveConfirmation {
    pub config: ConfirmationConfig,
    pub sender: Arc<dyn authd_strategy_api::Sender>,
    /// Bounds the confirmation messages being looked up and sent at once.
    pub in_flight: Arc<tokio::sync::Semaphore>,
}

impl Registry {
    /// Instantiates every strategy of `config` over `services`.
    pub fn build(config: &Config, services: &Services) -> Registry {
        let mut resources = BTreeMap::new();
        let mut strategies = BTreeMap::new();
        let mut confirmations = BTreeMap::new();
        let mut described = BTreeMap::new();
        for resource in &config.resources {
            let subject = resource.spec.name.clone();
            if let Some(c) = &resource.confirmation {
                confirmations.insert(
                    subject.clone(),
                    Arc::new(LiveConfirmation {
                        config: c.clone(),
                        sender: services.senders.build(&c.sender),
                        in_flight: Arc::new(tokio::sync::Semaphore::new(256)),
                    }),
                );
            }
            for s in &resource.strategies {
                let live = s.validated.instantiate(&subject, &s.name, services);
                strategies.insert((subject.clone(), s.name.clone()), live);
                described.insert(
                    (subject.clone(), s.name.clone()),
                    Described {
                        type_name: s.type_name.clone(),
                        docs: s.validated.docs(),
                    },
                );
            }
            resources.insert(subject, resource.spec.clone());
        }
        Registry {
            resources,
            strategies,
            confirmations,
            described,
        }
    }

    /// The `type` and phase documents of a strategy of `subject`.
    pub fn described(&self, subject: &str, strategy: &str) -> Option<&Described> {
        self.described
            .get(&(subject.to_string(), strategy.to_string()))
    }

    /// Every live strategy as `((subject, name), strategy)`.
    pub fn strategies(&self) -> impl Iterator<Item = (&(String, String), &Arc<dyn Strategy>)> {
        self.strategies.iter()
    }

    pub fn has_subject(&self, subject: &str) -> bool {
        self.resources.contains_key(subject)
    }

    /// The resource `subject`, as the strategies see it.
    pub fn resource(&self, subject: &str) -> Option<&ResourceSpec> {
        self.resources.get(subject)
    }

    /// The confirmation of `subject`, when it has one.
    pub fn confirmation(&self, subject: &str) -> Option<&Arc<LiveConfirmation>> {
        self.confirmations.get(subject)
    }

    /// The resources, by subject.
    pub fn resources(&self) -> impl Iterator<Item = &ResourceSpec> {
        self.resources.values()
    }

    /// The live strategies of `subject`, by name.
    pub fn strategies_of<'a>(
        &'a self,
        subject: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a Arc<dyn Strategy>)> + 'a {
        self.strategies
            .range((subject.to_string(), String::new())..)
            .take_while(move |((s, _), _)| s == subject)
            .map(|((_, name), strategy)| (name.as_str(), strategy))
    }

    pub fn strategy(&self, subject: &str, strategy: &str) -> Option<&Arc<dyn Strategy>> {
        self.strategies
            .get(&(subject.to_string(), strategy.to_string()))
    }

    /// The phase spec of `phase` on a strategy, if it serves it (with a path parameter when
    /// `with_param`).
    pub fn phase<'a>(
        strategy: &'a Arc<dyn Strategy>,
        phase: &str,
        with_param: bool,
    ) -> Option<&'a PhaseSpec> {
        strategy
            .phases()
            .iter()
            .find(|p| p.name == phase && p.param.is_some() == with_param)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factory_names_are_unique() {
        let names: std::collections::BTreeSet<_> =
            FACTORIES.iter().map(|f| f.type_name()).collect();
        assert_eq!(names.len(), FACTORIES.len());
    }

    const PASSWORD: &str = "type = \"password\"\nidentity_field = \"email\"\n";

    fn with_keys(tables: &[(&str, &str, &str)]) -> String {
        let mut text = String::from("version = 1\n");
        for resource in ["user", "admin"] {
            text.push_str(&format!(
                "[resources.{resource}.attributes]\nemail = {{ type = \"ci_string\", unique = true }}\n\
                 [resources.{resource}.strategies.password]\n{PASSWORD}"
            ));
            for (r, name, table) in tables {
                if *r == resource {
                    text.push_str(&format!(
                        "[resources.{r}.strategies.{name}]\ntype = \"api_key\"\n{table}\n"
                    ));
                }
            }
        }
        text
    }

    #[test]
    fn two_api_key_strategies_of_one_prefix_are_refused_naming_both() {
        // Two resources, one prefix.
        let err = parse_config(&with_keys(&[
            ("user", "keys", "prefix = \"acme\""),
            ("admin", "tokens", "prefix = \"acme\""),
        ]))
        .err()
        .unwrap_or_else(|| panic!("should fail"));
        let text = err.to_string();
        assert_eq!(err.0.len(), 1, "{text}");
        assert!(
            text.contains("resources.admin.strategies.tokens.prefix")
                && text.contains("resources.user.strategies.keys.prefix"),
            "{text}"
        );
        assert!(!text.contains("acme"), "the value is not echoed: {text}");
        // One resource, both on the default prefix.
        let err = parse_config(&with_keys(&[("user", "a", ""), ("user", "b", "")]))
            .err()
            .unwrap_or_else(|| panic!("should fail"));
        assert_eq!(err.0[0].path, "resources.user.strategies.b.prefix");
        assert!(
            err.0[0]
                .message
                .contains("resources.user.strategies.a.prefix"),
            "{err}"
        );
        // Prefixes that only start alike are distinct starts (`ab_`, `abc_`).
        assert!(
            parse_config(&with_keys(&[
                ("user", "keys", "prefix = \"ab\""),
                ("admin", "keys", "prefix = \"abc\""),
            ]))
            .is_ok()
        );
    }

    #[test]
    fn claims_clash_within_a_namespace_when_one_starts_with_the_other() {
        let claim = |namespace, value: &str| authd_strategy_api::Claim {
            namespace,
            key: "prefix",
            value: value.into(),
        };
        assert!(claim("bearer", "ab_").clashes_with(&claim("bearer", "ab_")));
        assert!(claim("bearer", "ab").clashes_with(&claim("bearer", "abc")));
        assert!(claim("bearer", "abc").clashes_with(&claim("bearer", "ab")));
        assert!(!claim("bearer", "ab_").clashes_with(&claim("bearer", "abc_")));
        assert!(!claim("bearer", "ab_").clashes_with(&claim("other", "ab_")));
    }

    #[test]
    fn unknown_strategy_type_names_the_known_ones() {
        let text = "version = 1\n[resources.user.attributes]\nemail = { type = \"ci_string\", unique = true }\n\
                    [resources.user.strategies.magic]\ntype = \"magic_lnk\"\n";
        let err = parse_config(text)
            .err()
            .unwrap_or_else(|| panic!("should fail"));
        assert_eq!(err.0[0].path, "resources.user.strategies.magic.type");
        assert!(
            err.0[0].message.contains("password, magic_link, api_key"),
            "{err}"
        );
    }
}
