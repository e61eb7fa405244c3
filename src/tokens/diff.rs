//! Key changes in words, for `authd check --against`: what a reload would do to the tokens
//! already issued ("key 2026-11 becomes retired: tokens it signed verify until ...", "key X
//! removed: tokens it signed stop verifying now"). Dates assume the reload happens now.
//!
//! Pure: reads two validated configs, opens no key file (keys without an `id` are named by
//! their file).

use crate::config::{Config, KeyConfig, KeyState};
use crate::sessions::rfc3339;

/// The changes to signing keys from `current` to `new`, one sentence each.
pub fn key_changes(current: &Config, new: &Config, now: u64) -> Vec<String> {
    let mut out = Vec::new();
    let (a, b) = (&current.tokens, &new.tokens);
    let until = rfc3339(now.saturating_add(new.longest_token_lifetime().as_secs()));
    if a.algorithm != b.algorithm {
        let mut line = format!(
            "signing algorithm {} -> {}: a rotation; tokens signed with {} verify until {until}",
            a.algorithm.name(),
            b.algorithm.name(),
            a.algorithm.name()
        );
        if a.algorithm.is_hmac() && !b.algorithm.is_hmac() && a.keys.is_empty() {
            line.push_str(&format!(
                " (with the HMAC secret: keep {} set if it is not generated)",
                secret_key_name(new)
            ));
        }
        if !b.algorithm.is_hmac() && b.keys.is_empty() {
            line.push_str(&format!(
                "; a new {} key is generated{}",
                b.algorithm.name(),
                if a.algorithm.is_hmac() {
                    " and signs at once"
                } else {
                    ", published in the JWKS for tokens.publish_ahead before it signs"
                }
            ));
        }
        out.push(line);
    }
    for (old_key, new_key) in pairs(&a.keys, &b.keys) {
        match (old_key, new_key) {
            (Some(k), None) => out.push(format!(
                "key {} removed: tokens it signed stop verifying now",
                k.label()
            )),
            (None, Some(k)) => out.push(format!(
                "key {} added as {}: {}",
                k.label(),
                k.state.name(),
                state_effect(k.state, &until)
            )),
            (Some(x), Some(y)) if x.state != y.state => out.push(format!(
                "key {} becomes {}: {}",
                y.label(),
                y.state.name(),
                state_effect(y.state, &until)
            )),
            _ => {}
        }
    }
    if a.keys.is_empty() && !b.keys.is_empty() && !a.algorithm.is_hmac() {
        out.push(format!(
            "generated keys stop signing: tokens they signed verify until {until}"
        ));
    }
    if !a.keys.is_empty() && b.keys.is_empty() && !b.algorithm.is_hmac() {
        out.push(format!(
            "keys from files are all removed (tokens they signed stop verifying now); a {} key is generated",
            b.algorithm.name()
        ));
    }
    if a.rotate_every != b.rotate_every {
        out.push(match b.rotate_every {
            Some(d) => format!(
                "generated keys rotate every {}",
                humantime::format_duration(d)
            ),
            None => "generated keys no longer rotate".into(),
        });
    }
    let subjects = new.resources.iter().map(|r| r.spec.name.as_str());
    for subject in subjects {
        if current.resources.iter().any(|r| r.spec.name == subject)
            && current.audience_of(subject) != new.audience_of(subject)
        {
            out.push(format!(
                "audience of {subject} tokens changes: tokens issued before no longer pass authd's checks"
            ));
        }
    }
    out
}

fn secret_key_name(config: &Config) -> &'static str {
    match config.tokens.secret {
        crate::config::SecretSource::File(_) => "tokens.signing_secret_file",
        _ => "tokens.signing_secret_env",
    }
}

fn state_effect(state: KeyState, until: &str) -> String {
    match state {
        KeyState::Pending => "published in the JWKS, not signing".into(),
        KeyState::Active => "it signs new tokens from the reload on".into(),
        KeyState::Retired => format!("tokens it signed verify until {until}"),
    }
}

/// The keys of two lists matched by id, else by file.
fn pairs<'a>(
    a: &'a [KeyConfig],
    b: &'a [KeyConfig],
) -> Vec<(Option<&'a KeyConfig>, Option<&'a KeyConfig>)> {
    let same = |x: &KeyConfig, y: &KeyConfig| match (&x.id, &y.id) {
        (Some(i), Some(j)) => i == j,
        _ => x.file == y.file,
    };
    let mut out: Vec<_> = a
        .iter()
        .map(|x| (Some(x), b.iter().find(|y| same(x, y))))
        .collect();
    for y in b {
        if !a.iter().any(|x| same(x, y)) {
            out.push((None, Some(y)));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn config(tokens: &str) -> Config {
        crate::registry::parse_config(&format!(
            "version = 1\n[tokens]\n{tokens}\n[resources.user]\nattributes.email = {{ type = \"string\" }}\n"
        ))
        .unwrap()
    }

    #[test]
    fn retirement_removal_and_algorithm_switches_in_words() {
        let a = config(
            "signing_algorithm = \"EdDSA\"\ntoken_lifetime = \"1d\"\n\
             [[tokens.keys]]\nid = \"2026-11\"\nfile = \"/k/11.pem\"\n\
             [[tokens.keys]]\nid = \"old\"\nfile = \"/k/old.pem\"\nstate = \"retired\"\n\
             [[tokens.keys]]\nid = \"2026-12\"\nfile = \"/k/12.pem\"\nstate = \"pending\"",
        );
        let b = config(
            "signing_algorithm = \"EdDSA\"\ntoken_lifetime = \"1d\"\n\
             [[tokens.keys]]\nid = \"2026-11\"\nfile = \"/k/11.pem\"\nstate = \"retired\"\n\
             [[tokens.keys]]\nid = \"2026-12\"\nfile = \"/k/12.pem\"",
        );
        let lines = key_changes(&a, &b, 0);
        assert!(
            lines.contains(
                &"key 2026-11 becomes retired: tokens it signed verify until 1970-01-02T00:00:00Z"
                    .to_string()
            ),
            "{lines:#?}"
        );
        assert!(
            lines.contains(&"key old removed: tokens it signed stop verifying now".to_string())
        );
        assert!(lines.contains(
            &"key 2026-12 becomes active: it signs new tokens from the reload on".to_string()
        ));

        let hs = config("signing_algorithm = \"HS256\"\ntoken_lifetime = \"1d\"");
        let ed = config("signing_algorithm = \"EdDSA\"\ntoken_lifetime = \"1d\"");
        let lines = key_changes(&hs, &ed, 0);
        assert_eq!(lines.len(), 1, "{lines:#?}");
        assert!(lines[0].starts_with(
            "signing algorithm HS256 -> EdDSA: a rotation; tokens signed with HS256 verify until 1970-01-02T00:00:00Z"
        ));
        assert!(key_changes(&ed, &ed, 0).is_empty());
    }
}
