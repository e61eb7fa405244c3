//! JWT session tokens: issuing (HS256 sign) and verifying (signature, algorithm, exp, nbf,
//! iss), through `TokenService` and the `Tokens` trait the strategies use.
//!
//! Run with `cargo bench --bench tokens`.

use std::hint::black_box;
use std::time::Duration;

use authd::config::{SecretSource, SigningAlgorithm, TokensConfig};
use authd::tokens::TokenService;
use authd_strategy_api::{Purpose, Tokens};
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
        let user = Uuid::new_v4();
        let lifetime = tokens.session_lifetime();
        group.bench_function(format!("issue_{name}"), |b| {
            b.iter(|| {
                tokens
                    .issue(black_box("user"), user, Purpose::User, lifetime, None, None)
                    .unwrap_or_else(|e| panic!("{e}"))
            });
        });
        let issued = tokens
            .issue("user", user, Purpose::User, lifetime, None, None)
            .unwrap_or_else(|e| panic!("{e}"));
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
