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

/// The chosen value that `authd bench-hash --calibrate` prints as TOML for `algorithm`:
/// `hash = { algorithm = "scrypt", log_n = 12, r = 8, p = 1 }` gives `("log_n", "12")`.
fn calibrated(stdout: &str, algorithm: &str, knob: &str) -> String {
    let line = stdout
        .lines()
        .find(|l| l.contains(&format!("hash = {{ algorithm = \"{algorithm}\"")))
        .unwrap_or_else(|| panic!("no {algorithm} TOML in\n{stdout}"));
    let rest = &line[line.find(&format!("{knob} = ")).unwrap() + knob.len() + 3..];
    rest.split([',', ' ']).next().unwrap().to_string()
}

#[test]
fn bench_hash_plot_draws_every_algorithm_with_its_target_and_calibrated_setting() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("plot.svg");
    // A small target and one timed run per setting: a few seconds for the three algorithms
    // (the hash crates are optimised in test builds too), with room for a loaded machine.
    let out = authd()
        .args(["bench-hash", "--target", "20ms", "--samples", "1", "--plot"])
        .arg(&svg)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("(for the plot)"), "{stdout}");
    assert!(
        stderr.contains(&format!("plot written to {}", svg.display())),
        "{stderr}"
    );

    let text = std::fs::read_to_string(&svg).unwrap();
    let doc = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("not XML: {e}"));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    let texts: Vec<String> = root
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| n.text().unwrap_or("").trim().to_string())
        .collect();
    let has = |prefix: &str| texts.iter().filter(|t| t.starts_with(prefix)).count();

    // One panel per algorithm, each with its target in the legend.
    for caption in ["argon2id (t=2 p=1 kept)", "scrypt (r=8 p=1 kept)", "bcrypt"] {
        assert_eq!(has(caption), 1, "{caption:?} in {texts:?}");
    }
    assert_eq!(has("target 20 ms"), 3, "{texts:?}");
    // The target as a horizontal line across each panel (and a short one in each legend).
    let target_lines: Vec<Vec<&str>> = root
        .descendants()
        .filter(|n| n.has_tag_name("polyline") && n.attribute("stroke") == Some("#D62728"))
        .map(|n| n.attribute("points").unwrap().split_whitespace().collect())
        .collect();
    let across = target_lines
        .iter()
        .filter(|points| {
            let ys: Vec<&str> = points
                .iter()
                .map(|p| p.split(',').nth(1).unwrap())
                .collect();
            let xs: Vec<i64> = points
                .iter()
                .map(|p| p.split(',').next().unwrap().parse().unwrap())
                .collect();
            ys.len() == 2 && ys[0] == ys[1] && xs[1] - xs[0] > 300
        })
        .count();
    assert_eq!(across, 3, "{target_lines:?}");

    // The calibrated setting, marked and labelled in each panel: the same one printed as TOML.
    for (algorithm, knob) in [
        ("argon2id", "memory_kib"),
        ("scrypt", "log_n"),
        ("bcrypt", "cost"),
    ] {
        let value = calibrated(&stdout, algorithm, knob);
        let label = format!("chosen: {knob} = {value}, ");
        assert_eq!(has(&label), 1, "{label:?} in {texts:?}");
        assert!(
            texts
                .iter()
                .any(|t| t.starts_with(&label) && t.ends_with("/s"))
        );
    }
    let chosen_marks = root
        .descendants()
        .filter(|n| {
            n.has_tag_name("circle")
                && n.attribute("fill") == Some("#2CA02C")
                && n.attribute("r") == Some("6")
        })
        .count();
    assert_eq!(chosen_marks, 3);
    // The chosen point's sign-ins per second by its mark, in its colour.
    let chosen_rates = root
        .descendants()
        .filter(|n| {
            n.has_tag_name("text")
                && n.attribute("fill") == Some("#2CA02C")
                && n.text().unwrap_or("").trim().ends_with("/s")
        })
        .count();
    assert_eq!(chosen_rates, 3, "{texts:?}");
    // The other points have theirs too (but for those crowded next to another), and every one
    // is a rate.
    let timed = stdout
        .lines()
        .filter(|l| l.contains(" median ") && l.contains(" p95 "))
        .count();
    let rates: Vec<&String> = texts
        .iter()
        .filter(|t| t.ends_with("/s") && !t.starts_with("chosen"))
        .collect();
    assert!(
        rates.len() >= 6 && rates.len() <= timed,
        "{rates:?}\n{stdout}"
    );
    for rate in rates {
        let number = rate.trim_end_matches("/s");
        assert!(number.parse::<f64>().unwrap() > 0.0, "{rate:?}");
    }
}

#[test]
fn bench_hash_plot_to_an_unwritable_path_fails_before_timing_anything() {
    let dir = tempfile::tempdir().unwrap();
    for path in [
        dir.path().join("missing").join("plot.svg"),
        dir.path().to_path_buf(),
    ] {
        let out = authd()
            .args(["bench-hash", "--algorithm", "bcrypt", "--plot"])
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(&format!("authd: --plot: cannot write {}", path.display())),
            "{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(!stderr.contains("calibrating"), "{stderr}");
        assert!(out.stdout.is_empty());
    }
    assert!(!dir.path().join("missing").exists());
}
