//! Each hash provider at OWASP's recommended parameters (argon2id m=19456 t=2 p=1, scrypt
//! log_n=17 r=8 p=1, bcrypt cost 12): one hash and one verify, exactly as the daemon's hashing
//! workers run them (argon2id reuses one memory block per thread).
//!
//! Run with `cargo bench --bench hash`. A hash takes 15-300 ms, so each benchmark takes 10 flat
//! samples of one iteration: about 40 s in all on 2 cores.

use std::hint::black_box;
use std::time::Duration;

use authd_password::HashParams;
use authd_password::hash::verify;
use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};

const PASSWORD: &[u8] = b"correct horse battery staple";

fn owasp() -> [(&'static str, HashParams); 3] {
    [
        (
            "argon2id_m19456_t2_p1",
            HashParams::Argon2id {
                memory_kib: 19456,
                iterations: 2,
                parallelism: 1,
            },
        ),
        (
            "scrypt_ln17_r8_p1",
            HashParams::Scrypt {
                log_n: 17,
                r: 8,
                p: 1,
            },
        ),
        ("bcrypt_cost12", HashParams::Bcrypt { cost: 12 }),
    ]
}

fn hashing(c: &mut Criterion) {
    for (name, params) in owasp() {
        let mut group = c.benchmark_group(name);
        group
            .sampling_mode(SamplingMode::Flat)
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(4));
        let stored = params
            .hash(PASSWORD)
            .unwrap_or_else(|e| panic!("{params}: {e}"));
        group.bench_function("hash", |b| {
            b.iter(|| {
                params
                    .hash(black_box(PASSWORD))
                    .unwrap_or_else(|e| panic!("{e}"))
            });
        });
        group.bench_function("verify", |b| {
            b.iter(|| {
                let ok = verify(black_box(PASSWORD), black_box(&stored))
                    .unwrap_or_else(|e| panic!("{e}"));
                assert!(ok);
            });
        });
        group.finish();
    }
}

criterion_group!(benches, hashing);
criterion_main!(benches);
