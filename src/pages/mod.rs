//! The hosted pages' templates, rendered to strings: minijinja with HTML autoescaping, the
//! built-in ones (`templates/*.html`, `style.css`) embedded in the binary (`include_str!`), each
//! replaceable by a file of the same name in `pages.templates_dir`. Loaded when a generation is
//! built, so that a template that does not compile refuses the config (the old generation
//! stays), and a reload picks up edited files.
//!
//! Must not know HTTP (routes, forms, cookies and headers are `http::pages`'s) nor hold a rule
//! of the pages: what is shown comes from the caller's context.

use std::path::Path;

use minijinja::{AutoEscape, Environment, UndefinedBehavior};

/// The built-in templates, by name.
pub const BUILTIN: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("form.html", include_str!("templates/form.html")),
    ("message.html", include_str!("templates/message.html")),
    ("account.html", include_str!("templates/account.html")),
];

/// The stylesheet served at `{base_path}/static/style.css`.
pub const STYLE: &str = include_str!("style.css");

/// Largest template file read from `templates_dir`.
const MAX_TEMPLATE_BYTES: u64 = 256 * 1024;

/// A compiled set of templates.
pub struct Templates {
    env: Environment<'static>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Templates")
    }
}

impl Templates {
    /// The built-in templates, each replaced by `<dir>/<name>` when that file exists.
    ///
    /// # Errors
    /// A message naming the file that cannot be read or does not compile.
    pub fn load(dir: Option<&Path>) -> Result<Templates, String> {
        let mut env = Environment::new();
        // Everything is escaped as HTML, whatever the template's name.
        env.set_auto_escape_callback(|_| AutoEscape::Html);
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        for (name, builtin) in BUILTIN {
            let text = match dir.map(|d| d.join(name)) {
                Some(path) if path.is_file() => read_bounded(&path)?,
                _ => (*builtin).to_string(),
            };
            env.add_template_owned((*name).to_string(), text)
                .map_err(|e| format!("pages.templates_dir: {name} does not compile: {e}"))?;
        }
        Ok(Templates { env })
    }

    /// Renders `name` with `context`.
    ///
    /// # Errors
    /// The template's failure (for the log).
    pub fn render(&self, name: &str, context: &serde_json::Value) -> Result<String, String> {
        self.env
            .get_template(name)
            .and_then(|t| t.render(context))
            .map_err(|e| format!("template {name}: {e}"))
    }
}

/// The built-in templates' names, for documents and tests.
pub fn template_names() -> impl Iterator<Item = &'static str> {
    BUILTIN.iter().map(|(n, _)| *n)
}

fn read_bounded(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("pages.templates_dir: cannot read {}: {e}", path.display()))?;
    if meta.len() > MAX_TEMPLATE_BYTES {
        return Err(format!(
            "pages.templates_dir: {} is larger than {MAX_TEMPLATE_BYTES} bytes",
            path.display()
        ));
    }
    std::fs::read_to_string(path)
        .map_err(|e| format!("pages.templates_dir: cannot read {}: {e}", path.display()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_are_escaped_as_html() {
        let t = Templates::load(None).unwrap();
        let html = t
            .render(
                "message.html",
                &json!({ "site": "<b>x</b>", "page": { "heading": "<script>alert(1)</script>", "text": "a & b" } }),
            )
            .unwrap();
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(html.contains("&lt;b&gt;x"), "{html}");
    }

    #[test]
    fn a_file_in_the_folder_replaces_the_builtin_and_a_broken_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("message.html"), "custom {{ page.heading }}").unwrap();
        let t = Templates::load(Some(dir.path())).unwrap();
        let html = t
            .render("message.html", &json!({ "page": { "heading": "<i>" } }))
            .unwrap();
        assert_eq!(html, "custom &lt;i&gt;");
        std::fs::write(dir.path().join("form.html"), "{% if %}").unwrap();
        let err = Templates::load(Some(dir.path())).unwrap_err();
        assert!(err.contains("form.html"), "{err}");
    }
}
