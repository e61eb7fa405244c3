//! The `authd` binary's `check` and `bench-hash` commands.

use std::process::Command;

fn authd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_authd"))
}

#[test]
fn check_accepts_the_example_config_and_lists_routes() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml");
    let out = authd()
        .args(["check", "--config", example])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "resource user",
        "POST      /auth/user/password/register",
        "GET,POST  /auth/user/password/sign_in_with_token",
        "POST      /auth/user/password/reset",
        "GET       /auth/user/me",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in\n{stdout}");
    }
}

#[test]
fn check_reports_every_problem_with_its_toml_path() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        r#"
version = 1
[server]
listen = "not an address"
colour = "blue"
workers = 3
[tokens]
signing_algorithm = "RS512"
[resources.user]
attributes.email = { type = "ci_string" }
attributes.age = { type = "number" }
[resources.user.strategies.password]
type = "password"
identity_field = "email"
hash = { algorithm = "argon2id", memory_kib = 1 }
"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = authd()
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for path in [
        "server.listen",
        "server.colour",
        "server.workers",
        "tokens.signing_algorithm",
        "resources.user.attributes.age.type",
    ] {
        assert!(stderr.contains(path), "missing {path} in\n{stderr}");
    }
}

#[test]
fn check_reports_strategy_problems_with_their_paths() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        r#"
version = 1
[resources.user]
attributes.email = { type = "ci_string" }
[resources.user.strategies.password]
type = "password"
identity_field = "email"
sign_in_token_lifetime = "soon"
passwrd_field = "pw"
hash = { algorithm = "argon2id", memory_kib = 1 }
[resources.user.strategies.password.resettable]
sender = { type = "log" }
lifetme = "1d"
"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = authd()
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for path in [
        "resources.user.strategies.password.identity_field",
        "resources.user.strategies.password.sign_in_token_lifetime",
        "resources.user.strategies.password.hash.memory_kib",
        "resources.user.strategies.password.passwrd_field",
        "resources.user.strategies.password.resettable.lifetme",
    ] {
        assert!(stderr.contains(path), "missing {path} in\n{stderr}");
    }
}

#[test]
fn bench_hash_plot_writes_an_svg_and_the_calibrated_toml() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let svg = dir.path().join("plot.svg");
    // bcrypt at a small target: a handful of cheap hashes (cost 4 to about 8), with room for
    // a loaded machine.
    let out = authd()
        .args([
            "bench-hash",
            "--algorithm",
            "bcrypt",
            "--target",
            "20ms",
            "--samples",
            "1",
            "--plot",
        ])
        .arg(&svg)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("hash = { algorithm = \"bcrypt\", cost = "),
        "{stdout}"
    );
    assert!(stdout.contains("(for the plot)"), "{stdout}");
    let text = std::fs::read_to_string(&svg).unwrap_or_else(|e| panic!("{e}"));
    assert!(text.trim_start().starts_with("<svg"));
    assert!(text.contains("target 20 ms") && text.contains("chosen: cost = "));
}
