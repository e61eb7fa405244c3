//! Links to the hosted pages in messages whose sender sets none (`pages.public_url`): a
//! password reset links to `{public_url}{base_path}/{subject}/{strategy}/reset?token=...`, a
//! magic link to `.../{strategy}/sign_in?token=...`, a confirmation to
//! `{public_url}{base_path}/{subject}/confirm?confirm=...`. An `smtp` sender without its
//! `reset_url`/`magic_link_url`/`confirm_url` gets that template (so the email's `{{url}}` is
//! the page); every message also carries the link as `data.url` (what a webhook receiver
//! reads). A sender's own link template always wins. Wraps the daemon's senders; must not
//! deliver anything itself.

use std::sync::Arc;

use async_trait::async_trait;
use authd_strategy_api::{Message, Sender, SenderSpec, Senders, kinds};
use serde_json::Value;

/// The daemon's senders, with links to the pages added.
pub struct PageLinks {
    inner: Arc<dyn Senders>,
    /// `{public_url}{base_path}`, no trailing `/`.
    root: String,
}

impl PageLinks {
    pub fn new(inner: Arc<dyn Senders>, public_url: String, base_path: String) -> PageLinks {
        PageLinks {
            inner,
            root: format!("{public_url}{base_path}"),
        }
    }
}

impl Senders for PageLinks {
    fn build(&self, spec: &SenderSpec) -> Arc<dyn Sender> {
        Arc::new(LinkingSender {
            inner: Arc::clone(&self.inner),
            spec: spec.clone(),
            root: self.root.clone(),
        })
    }
}

struct LinkingSender {
    inner: Arc<dyn Senders>,
    spec: SenderSpec,
    root: String,
}

/// The page a message of `kind` links to, as a template with `{{token}}`.
pub fn page_link(root: &str, kind: &str, subject: &str, strategy: &str) -> Option<String> {
    match kind {
        kinds::PASSWORD_RESET => Some(format!(
            "{root}/{subject}/{strategy}/reset?token={{{{token}}}}"
        )),
        kinds::MAGIC_LINK => Some(format!(
            "{root}/{subject}/{strategy}/sign_in?token={{{{token}}}}"
        )),
        kinds::CONFIRMATION => Some(format!("{root}/{subject}/confirm?confirm={{{{token}}}}")),
        _ => None,
    }
}

#[async_trait]
impl Sender for LinkingSender {
    async fn send(&self, mut m: Message) -> Result<(), String> {
        let Some(template) = page_link(&self.root, &m.kind, &m.subject, &m.strategy) else {
            return self.inner.build(&self.spec).send(m).await;
        };
        let mut spec = self.spec.clone();
        if let SenderSpec::Smtp(s) = &mut spec {
            let own = match m.kind.as_str() {
                kinds::PASSWORD_RESET => &mut s.reset_url,
                kinds::MAGIC_LINK => &mut s.magic_link_url,
                _ => &mut s.confirm_url,
            };
            if own.is_some() {
                return self.inner.build(&self.spec).send(m).await;
            }
            *own = Some(template.clone());
        }
        if let Some(token) = &m.token {
            // Tokens are URL-safe (JWTs); encoded anyway, so the link never breaks.
            let encoded: String = form_urlencoded::byte_serialize(token.as_bytes()).collect();
            let url = authd_strategy_api::render_template(&template, |name| {
                (name == "token").then(|| encoded.clone())
            });
            m.data.insert("url".into(), Value::String(url));
        }
        self.inner.build(&spec).send(m).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn links_name_the_page_of_each_kind() {
        let root = "https://auth.example.com/ui";
        assert_eq!(
            page_link(root, kinds::PASSWORD_RESET, "user", "password").unwrap(),
            "https://auth.example.com/ui/user/password/reset?token={{token}}"
        );
        assert_eq!(
            page_link(root, kinds::MAGIC_LINK, "user", "magic").unwrap(),
            "https://auth.example.com/ui/user/magic/sign_in?token={{token}}"
        );
        assert_eq!(
            page_link(root, kinds::CONFIRMATION, "user", "").unwrap(),
            "https://auth.example.com/ui/user/confirm?confirm={{token}}"
        );
        assert_eq!(page_link(root, kinds::EVENT, "user", "x"), None);
    }
}
