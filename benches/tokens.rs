//! JWT session tokens: issuing (HS256 sign) and verifying (signature, algorithm, exp, nbf,
//! iss), through `TokenService` and the `Tokens` trait the strategies use.
//!
//! Run with `cargo bench --bench tokens`.

use std::hint::black_box;
use std::time::Duration;

use authd::config::{SecretSource, SigningAlgorithm, TokensConfig};
use authd::tokens::TokenService;
use std::sync::Arc;

use authd_strategy_api::{Clock, NoEvents, Purpose, TokenSpec, Tokens, UserRecord};
use criterion::{Criterion, criterion_group, criterion_main};
use uuid::Uuid;

fn service(algorithm: SigningAlgorithm) -> TokenService {
    TokenService::new(
        &TokensConfig {
            issuer: "authd".into(),
            algorithm,
            secret: SecretSource::Generated,
            token_lifetime: Duration::from_secs(14 * 24 * 3600),
        },
        &[7u8; 32],
        Clock::system(),
        Arc::new(NoEvents),
    )
}

fn tokens(c: &mut Criterion) {
    let mut group = c.benchmark_group("tokens");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for (name, algorithm) in [
        ("HS256", SigningAlgorithm::Hs256),
        ("HS512", SigningAlgorithm::Hs512),
    ] {
        let tokens = service(algorithm);
        let user = UserRecord {
            id: Uuid::new_v4(),
            attributes: Default::default(),
            secrets: Default::default(),
            meta: Default::default(),
            session_epoch: 0,
            created_at: 0,
        };
        let lifetime = tokens.session_lifetime();
        let spec = || TokenSpec {
            subject: black_box("user"),
            user: &user,
            purpose: Purpose::SESSION,
            lifetime,
            act: None,
            bnd: None,
        };
        group.bench_function(format!("issue_{name}"), |b| {
            b.iter(|| tokens.issue(spec()).unwrap_or_else(|e| panic!("{e}")));
        });
        let issued = tokens.issue(spec()).unwrap_or_else(|e| panic!("{e}"));
        group.bench_function(format!("verify_{name}"), |b| {
            b.iter(|| {
                tokens
                    .verify(black_box(&issued.token))
                    .unwrap_or_else(|e| panic!("{e}"))
            });
        });
    }
    group.finish();
}

criterion_group!(benches, tokens);
criterion_main!(benches);
