//! JWT session tokens, per algorithm (EdDSA, ES256, RS256, HS256, HS512): issuing (sign),
//! verifying on first sight (key by `kid`, signature, algorithm, exp, nbf, iss, aud) and
//! verifying a token seen before (the verified-token cache), through `TokenService` and the
//! `Tokens` trait the strategies use.
//!
//! Run with `cargo bench --bench tokens`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use authd::config::{SigningAlgorithm, TokensConfig};
use authd::tokens::TokenService;
use authd_strategy_api::{Clock, NoEvents, Purpose, TokenSpec, Tokens, UserRecord};
use criterion::{Criterion, criterion_group, criterion_main};
use uuid::Uuid;

fn tokens(c: &mut Criterion) {
    let mut group = c.benchmark_group("tokens");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for algorithm in [
        SigningAlgorithm::EdDsa,
        SigningAlgorithm::Es256,
        SigningAlgorithm::Rs256,
        SigningAlgorithm::Hs256,
        SigningAlgorithm::Hs512,
    ] {
        let name = algorithm.name();
        let tokens = TokenService::ephemeral(
            &TokensConfig::with(algorithm, "authd"),
            Clock::system(),
            Arc::new(NoEvents),
        )
        .unwrap_or_else(|e| panic!("{e}"));
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
                    .verify_uncached(black_box(&issued.token))
                    .unwrap_or_else(|e| panic!("{e}"))
            });
        });
        group.bench_function(format!("verify_cached_{name}"), |b| {
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
