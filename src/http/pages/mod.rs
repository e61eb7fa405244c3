//! The hosted pages (`[pages]`): server-rendered HTML for people, generated from the config's
//! resources and strategies, only for the phases they enable. Routes under `base_path`:
//!
//! - `{base}/{subject}/{strategy}/{phase}`: a password's `sign_in`, `register`,
//!   `reset_request`, `reset?token=...` and `change_password`; a magic link's `request` and
//!   `sign_in?token=...` (a button that POSTs); a TOTP's `verify`, `setup`, `confirm_setup`
//!   and `turn_off`; an API key strategy's `keys` (create) and `keys/{id}` (delete);
//! - `{base}/{subject}/confirm?confirm=...` (a button that POSTs), `{base}/{subject}/account`,
//!   `{base}/{subject}/sign_out`, `{base}/{subject}/sign_out_all`;
//! - `{base}/static/style.css`.
//!
//! A form posts `application/x-www-form-urlencoded` to its page; the page builds the same
//! [`PhaseRequest`] the JSON API builds and calls the same strategy phase (or the same
//! function of [`crate::sessions`] / [`crate::accounts`]), then renders the verdict as HTML:
//! the rules of authentication are never written twice. Field errors are the JSON API's
//! messages, next to their fields.
//!
//! Safety: every state-changing form carries a CSRF token ([`csrf`]); a sign-in sets the
//! session cookie (`HttpOnly`, `Secure` unless allowed otherwise, `SameSite`, `Path=/`) and
//! answers `303` to `return_to` when [`redirect::check`] allows it, else to the account page;
//! every page is sent with a CSP without script, `X-Frame-Options: DENY` and
//! `Referrer-Policy: no-referrer` (links carry tokens). Must not hold a rule of the domain.

pub mod cookies;
pub mod csrf;
pub mod redirect;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use authd_strategy_api::{
    Access, AttributeType, Credential, FieldDoc, Method as PhaseMethod, Params, PhaseRequest,
    Rejection, ResourceSpec, Session, Verdict,
};
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Body;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};

use super::BoxError;
use super::error::{Failure, Reply};
use super::handlers::{self, Settled};
use crate::config::PagesConfig;
use crate::sessions::{self, SignedIn, Via};
use crate::state::{Generation, PagesState};
use cookies::{
    clear_session_cookie, cookie, csrf_cookie_name, session_cookie, session_cookie_header,
};

/// Fields a page never shows as inputs (the JSON API's other knobs).
const HIDDEN_KNOBS: &[&str] = &["token_type"];
/// Fields that carry a token from a link or a previous step: hidden inputs.
const TOKEN_FIELDS: &[&str] = &["token", "reset_token", "setup_token", "confirm"];
/// The form field of the redirect target.
const RETURN_TO: &str = "return_to";

/// The Content-Security-Policy of the pages: nothing but their stylesheet and images of
/// their own (the QR code is a `data:` image); forms post to the daemon, or redirect after a
/// sign-in to an allowed target.
fn content_security_policy(config: &PagesConfig) -> String {
    let mut form_action = String::from("'self'");
    for a in &config.allowed_redirects {
        form_action.push(' ');
        form_action.push_str(&a.origin().ascii_serialization());
    }
    format!(
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
    )
}

fn security_headers(config: &PagesConfig, headers: &mut HeaderMap) {
    if let Ok(v) = HeaderValue::from_str(&content_security_policy(config)) {
        headers.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
}

/// Whether `path` is one of the pages (`base_path` or under it).
pub fn is_page_path(config: &PagesConfig, path: &str) -> bool {
    path.strip_prefix(config.base_path.as_str())
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// What a page shows of failures: messages by field, and one for the whole form.
#[derive(Default)]
struct Shown {
    fields: BTreeMap<String, Vec<String>>,
    general: Option<String>,
}

/// A refusal or failure as a page shows it: the error table's status and message (the same
/// as the JSON API's), field messages apart, and its header (`Retry-After`).
fn shown_failure(failure: Failure) -> (StatusCode, Shown, Option<(HeaderName, HeaderValue)>) {
    let parts = failure.parts();
    let mut shown = Shown::default();
    match parts.fields {
        Some(fields) => shown.fields = fields.0,
        None => shown.general = Some(parts.message.into_owned()),
    }
    (parts.status, shown, parts.header)
}

/// One request to the pages, with what every page needs.
struct Ctx<'a> {
    generation: &'a Generation,
    pages: &'a PagesState,
    peer: SocketAddr,
    /// The CSRF cookie's value (new when the browser sent none that is good).
    csrf_cookie: String,
    set_csrf_cookie: bool,
}

impl Ctx<'_> {
    fn base(&self) -> &str {
        &self.pages.config.base_path
    }

    fn reply(&self, status: StatusCode, content_type: &'static str, body: String) -> Reply {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        security_headers(&self.pages.config, r.headers_mut());
        if self.set_csrf_cookie {
            let c = &self.pages.config;
            let value = format!(
                "{}={}; Path={}; HttpOnly; SameSite=Lax{}",
                csrf_cookie_name(c),
                self.csrf_cookie,
                c.base_path,
                if c.cookie.secure { "; Secure" } else { "" }
            );
            if let Ok(v) = HeaderValue::from_str(&value) {
                r.headers_mut().append(header::SET_COOKIE, v);
            }
        }
        r
    }

    /// Renders `template` with `page`, the error summary and the CSRF token.
    fn render(&self, template: &str, status: StatusCode, page: Value, shown: &Shown) -> Reply {
        let labels: BTreeMap<String, String> = page["fields"]
            .as_array()
            .into_iter()
            .chain(
                page["forms"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|f| f["fields"].as_array()),
            )
            .flatten()
            .filter_map(|f| {
                Some((
                    f["name"].as_str()?.to_string(),
                    f["label"].as_str()?.to_string(),
                ))
            })
            .collect();
        let errors: Vec<Value> = shown
            .fields
            .iter()
            .flat_map(|(field, messages)| {
                let label = labels.get(field).cloned().unwrap_or_else(|| label(field));
                let anchor = if labels.contains_key(field) {
                    field.clone()
                } else {
                    String::new()
                };
                messages
                    .iter()
                    .map(move |m| json!({ "field": anchor, "label": label, "message": m }))
            })
            .collect();
        let context = json!({
            "site": self.pages.config.title,
            "lang": "en",
            "base": self.base(),
            "csrf": csrf::token_for(&self.pages.csrf_key, &self.csrf_cookie),
            "page": page,
            "errors": errors,
            "general_error": shown.general,
        });
        match self.pages.templates.render(template, &context) {
            Ok(html) => self.reply(status, "text/html; charset=utf-8", html),
            Err(cause) => {
                tracing::error!(%cause, "PG0500 a page template failed");
                self.reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain; charset=utf-8",
                    "Internal error".into(),
                )
            }
        }
    }

    /// A page with a heading and a text (and links).
    fn message(&self, status: StatusCode, heading: &str, text: &str, links: Value) -> Reply {
        self.render(
            "message.html",
            status,
            json!({ "heading": heading, "text": text, "links": links, "alert": status.is_client_error() || status.is_server_error() }),
            &Shown::default(),
        )
    }

    /// The page of a failure that has no form to go back to.
    fn failure(&self, failure: Failure) -> Reply {
        let (status, shown, header) = shown_failure(failure);
        let text = shown.general.unwrap_or_else(|| {
            shown
                .fields
                .iter()
                .flat_map(|(f, ms)| ms.iter().map(move |m| format!("{}: {m}", label(f))))
                .collect::<Vec<_>>()
                .join("; ")
        });
        let heading = match status {
            StatusCode::NOT_FOUND => "Page not found",
            StatusCode::UNAUTHORIZED => "This link or session is not valid",
            StatusCode::TOO_MANY_REQUESTS => "Too many attempts",
            StatusCode::FORBIDDEN => "Not allowed",
            s if s.is_server_error() => "Something went wrong",
            _ => "This request could not be completed",
        };
        let mut reply = self.message(status, heading, &text, json!([]));
        if let Some((name, value)) = header {
            reply.headers_mut().insert(name, value);
        }
        reply
    }

    /// `303 See Other` to `location`.
    fn see_other(&self, location: &str) -> Reply {
        let mut r = self.reply(
            StatusCode::SEE_OTHER,
            "text/plain; charset=utf-8",
            String::new(),
        );
        if let Ok(v) = HeaderValue::from_str(location) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        r
    }

    fn account_path(&self, subject: &str) -> String {
        format!("{}/{subject}/account", self.base())
    }

    /// Where a sign-in sends people: `return_to` when allowed, else the account page.
    fn after_sign_in(&self, subject: &str, return_to: Option<&str>) -> String {
        return_to
            .and_then(|r| redirect::check(r, &self.pages.config.allowed_redirects, self.base()))
            .unwrap_or_else(|| self.account_path(subject))
    }

    /// The session of the cookie, for `subject`.
    async fn session(
        &self,
        subject: &str,
        headers: &HeaderMap,
    ) -> Result<Option<Session>, Failure> {
        let Some(token) = session_cookie(&self.pages.config, headers) else {
            return Ok(None);
        };
        Ok(sessions::authenticate(self.generation, subject, &token)
            .await?
            // API keys are for programs; the pages are for people with a session.
            .filter(|s| matches!(s.credential, Credential::Token(_))))
    }

    /// Sets the session cookie for `token` and sends the browser on.
    fn signed_in(&self, token: &authd_strategy_api::IssuedToken, location: &str) -> Reply {
        let now = self.generation.services.clock.now_secs();
        let max_age = token.claims.exp.saturating_sub(now);
        let mut reply = self.see_other(location);
        let value = session_cookie_header(&self.pages.config, &token.token, max_age);
        if let Ok(v) = HeaderValue::from_str(&value) {
            reply.headers_mut().append(header::SET_COOKIE, v);
        }
        reply
    }

    /// Where to sign in to `subject`: a password's sign-in page, else a magic link's request.
    fn sign_in_path(&self, subject: &str) -> Option<String> {
        let registry = &self.generation.registry;
        [("password", "sign_in"), ("magic_link", "request")]
            .into_iter()
            .find_map(|(type_name, phase)| {
                registry.strategies_of(subject).find_map(|(name, s)| {
                    let described = registry.described(subject, name)?;
                    (described.type_name == type_name && s.phases().iter().any(|p| p.name == phase))
                        .then(|| format!("{}/{subject}/{name}/{phase}", self.base()))
                })
            })
    }
}

/// A field's label: its configured name, spelled for people (`password_confirmation` ->
/// "Password confirmation").
fn label(name: &str) -> String {
    let spaced = name.replace(['_', '-'], " ");
    let mut chars = spaced.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The kind of page a strategy phase is, by the strategy's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    SignIn,
    Register,
    ResetRequest,
    Reset,
    ChangePassword,
    MagicRequest,
    MagicSignIn,
    TotpVerify,
    TotpSetup,
    TotpConfirmSetup,
    TotpTurnOff,
    KeyCreate,
}

impl Kind {
    fn of(type_name: &str, phase: &str) -> Option<Kind> {
        Some(match (type_name, phase) {
            ("password", "sign_in") => Kind::SignIn,
            ("password", "register") => Kind::Register,
            ("password", "reset_request") => Kind::ResetRequest,
            ("password", "reset") => Kind::Reset,
            ("password", "change_password") => Kind::ChangePassword,
            ("magic_link", "request") => Kind::MagicRequest,
            ("magic_link", "sign_in") => Kind::MagicSignIn,
            ("totp", "verify") => Kind::TotpVerify,
            ("totp", "setup") => Kind::TotpSetup,
            ("totp", "confirm_setup") => Kind::TotpConfirmSetup,
            ("totp", "turn_off") => Kind::TotpTurnOff,
            ("api_key", "keys") => Kind::KeyCreate,
            _ => return None,
        })
    }

    /// The strategy phase the page calls, and how.
    fn phase(self, page_phase: &str) -> (&str, PhaseMethod) {
        match self {
            Kind::TotpTurnOff => ("", PhaseMethod::Delete),
            _ => (page_phase, PhaseMethod::Post),
        }
    }

    /// Pages that only answer a form of another page (the account page).
    fn post_only(self) -> bool {
        matches!(
            self,
            Kind::TotpSetup | Kind::TotpConfirmSetup | Kind::TotpTurnOff | Kind::KeyCreate
        )
    }

    /// `(heading, intro, submit)`.
    fn texts(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Kind::SignIn => ("Sign in", "", "Sign in"),
            Kind::Register => ("Create an account", "", "Create the account"),
            Kind::ResetRequest => (
                "Reset your password",
                "We will send a link to choose a new password.",
                "Send the link",
            ),
            Kind::Reset => ("Choose a new password", "", "Set the password"),
            Kind::ChangePassword => ("Change your password", "", "Change the password"),
            Kind::MagicRequest => (
                "Sign in with a link",
                "We will send you a link that signs you in.",
                "Send me a link",
            ),
            Kind::MagicSignIn => (
                "Sign in",
                "Press the button to finish signing in.",
                "Sign in",
            ),
            Kind::TotpVerify => (
                "Two-step verification",
                "Enter the code your authenticator app shows, or one of your recovery codes.",
                "Verify",
            ),
            Kind::TotpSetup | Kind::TotpConfirmSetup => (
                "Set up two-step verification",
                "Scan the QR code with your authenticator app, then enter the code it shows.",
                "Turn on",
            ),
            Kind::TotpTurnOff => (
                "Turn off two-step verification",
                "Enter a current code or a recovery code.",
                "Turn off",
            ),
            Kind::KeyCreate => ("Create an API key", "", "Create the key"),
        }
    }
}

/// What an input of a field looks like.
fn field_view(
    resource: Option<&ResourceSpec>,
    kind: Kind,
    doc: &FieldDoc,
    value: Option<&str>,
    errors: Option<&Vec<String>>,
) -> Value {
    let attribute = resource.and_then(|r| r.attribute(&doc.name));
    let (ty, autocomplete, inputmode) = match attribute {
        Some(a) if a.ty == AttributeType::Boolean => ("checkbox", "", ""),
        Some(a) if a.ty == AttributeType::Integer => ("text", "off", "numeric"),
        Some(a) if a.unique => (
            if doc.name.contains("email") {
                "email"
            } else {
                "text"
            },
            "username",
            "",
        ),
        Some(_) => ("text", "", ""),
        None => match doc.name.as_str() {
            "code" => ("text", "one-time-code", "numeric"),
            "recovery_code" | "name" | "expires_in" => ("text", "off", ""),
            "current_password" => ("password", "current-password", ""),
            _ if kind == Kind::SignIn => ("password", "current-password", ""),
            _ => ("password", "new-password", ""),
        },
    };
    let hint = match doc.name.as_str() {
        "recovery_code" => "Only if you cannot use the app.",
        "expires_in" => "Optional, e.g. 30d.",
        _ => "",
    };
    json!({
        "name": doc.name,
        "label": label(&doc.name),
        "type": ty,
        "autocomplete": autocomplete,
        "inputmode": inputmode,
        "required": doc.required,
        "value": value.unwrap_or_default(),
        "hint": hint,
        "errors": errors.cloned().unwrap_or_default(),
    })
}

/// The fields of a page from the phase's documents: `(visible, hidden)`.
fn form_fields(
    resource: Option<&ResourceSpec>,
    kind: Kind,
    docs: &[FieldDoc],
    values: &BTreeMap<String, String>,
    shown: &Shown,
) -> (Vec<Value>, Vec<Value>) {
    let mut visible = Vec::new();
    let mut hidden = Vec::new();
    for doc in docs {
        if HIDDEN_KNOBS.contains(&doc.name.as_str()) {
            continue;
        }
        let value = values.get(&doc.name).map(String::as_str);
        if TOKEN_FIELDS.contains(&doc.name.as_str()) {
            hidden.push(json!({ "name": doc.name, "value": value.unwrap_or_default() }));
        } else {
            visible.push(field_view(
                resource,
                kind,
                doc,
                value,
                shown.fields.get(&doc.name),
            ));
        }
    }
    // The first field in error, else the first field, takes the focus.
    let focus = visible
        .iter()
        .position(|f| f["errors"].as_array().is_some_and(|e| !e.is_empty()))
        .or(if visible.is_empty() { None } else { Some(0) });
    if let Some(i) = focus {
        visible[i]["focus"] = json!(true);
    }
    (visible, hidden)
}

/// The parameters of a phase from a form: the documented fields only, typed as the resource
/// declares them (an empty optional field is left out, as a JSON client would).
fn form_params(
    resource: Option<&ResourceSpec>,
    docs: &[FieldDoc],
    form: &BTreeMap<String, String>,
) -> Params {
    let mut params = Params::new();
    for doc in docs {
        let Some(text) = form.get(&doc.name) else {
            continue;
        };
        if text.is_empty() && !doc.required {
            continue;
        }
        let value = match resource.and_then(|r| r.attribute(&doc.name)).map(|a| a.ty) {
            Some(AttributeType::Boolean) => {
                Value::Bool(matches!(text.as_str(), "true" | "on" | "1"))
            }
            Some(AttributeType::Integer) => text
                .trim()
                .parse::<i64>()
                .map_or_else(|_| Value::String(text.clone()), Value::from),
            _ => Value::String(text.clone()),
        };
        params.insert(doc.name.clone(), value);
    }
    params
}

/// Reads a form body (`application/x-www-form-urlencoded`) within the body limit.
async fn read_form<B>(req: Request<B>, max: usize) -> Result<BTreeMap<String, String>, Failure>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !is_form {
        return Err(Failure::UnsupportedMediaType);
    }
    let body = match Limited::new(req.into_body(), max).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => return Err(Failure::PayloadTooLarge(max)),
        Err(_) => return Err(Failure::Timeout),
    };
    let mut form = BTreeMap::new();
    for (k, v) in form_urlencoded::parse(&body) {
        form.entry(k.into_owned()).or_insert_with(|| v.into_owned());
    }
    Ok(form)
}

fn query_map(req_query: Option<&str>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in form_urlencoded::parse(req_query.unwrap_or_default().as_bytes()) {
        out.entry(k.into_owned()).or_insert_with(|| v.into_owned());
    }
    out
}

/// Answers a request under `base_path`.
pub(super) async fn handle<B>(
    generation: &Generation,
    pages: &PagesState,
    peer: SocketAddr,
    req: Request<B>,
) -> Reply
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let given = cookie(req.headers(), &csrf_cookie_name(&pages.config))
        .filter(|v| csrf::is_cookie_value(v));
    let ctx = Ctx {
        generation,
        pages,
        peer,
        set_csrf_cookie: given.is_none(),
        csrf_cookie: given.unwrap_or_else(csrf::new_cookie_value),
    };
    match route(&ctx, req).await {
        Ok(reply) => reply,
        Err(failure) => ctx.failure(failure),
    }
}

async fn route<B>(ctx: &Ctx<'_>, req: Request<B>) -> Result<Reply, Failure>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let path = req.uri().path().to_string();
    let rest = path.strip_prefix(ctx.base()).unwrap_or_default();
    let segments: Vec<&str> = rest.split('/').skip(1).collect();
    let registry = &ctx.generation.registry;
    match segments.as_slice() {
        ["static", "style.css"] => {
            super::error::allow(&["GET"], req.method())?;
            let mut r = ctx.reply(
                StatusCode::OK,
                "text/css; charset=utf-8",
                crate::pages::STYLE.to_string(),
            );
            r.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            );
            Ok(r)
        }
        [subject, "account"] if registry.has_subject(subject) => {
            super::error::allow(&["GET"], req.method())?;
            let notice = query_map(req.uri().query()).remove("done");
            account(
                ctx,
                subject,
                req.headers(),
                notice.as_deref(),
                None,
                &Shown::default(),
            )
            .await
        }
        [subject, "confirm"] if registry.confirmation(subject).is_some() => {
            super::error::allow(&["GET", "POST"], req.method())?;
            confirm(ctx, subject, req).await
        }
        [subject, which @ ("sign_out" | "sign_out_all")] if registry.has_subject(subject) => {
            super::error::allow(&["POST"], req.method())?;
            sign_out(ctx, subject, which == &"sign_out_all", req).await
        }
        [subject, strategy, "keys", id] => {
            super::error::allow(&["POST"], req.method())?;
            let described = registry
                .described(subject, strategy)
                .ok_or(Failure::NotFound)?;
            if described.type_name != "api_key" {
                return Err(Failure::NotFound);
            }
            delete_key(ctx, subject, strategy, id, req).await
        }
        [subject, strategy, phase] => {
            let described = registry
                .described(subject, strategy)
                .ok_or(Failure::NotFound)?;
            let kind = Kind::of(&described.type_name, phase).ok_or(Failure::NotFound)?;
            let live = registry
                .strategy(subject, strategy)
                .ok_or(Failure::NotFound)?;
            let (phase_name, _) = kind.phase(phase);
            if !live.phases().iter().any(|p| p.name == phase_name) {
                return Err(Failure::NotFound);
            }
            if kind.post_only() {
                super::error::allow(&["POST"], req.method())?;
            } else {
                super::error::allow(&["GET", "POST"], req.method())?;
            }
            if req.method() == Method::POST {
                submit(ctx, subject, strategy, phase, kind, req).await
            } else {
                let values = query_map(req.uri().query());
                Ok(form_page(
                    ctx,
                    subject,
                    strategy,
                    phase,
                    kind,
                    &values,
                    &Shown::default(),
                    StatusCode::OK,
                ))
            }
        }
        _ => Err(Failure::NotFound),
    }
}

/// The documents of the fields a page's phase takes.
fn phase_fields(
    ctx: &Ctx<'_>,
    subject: &str,
    strategy: &str,
    kind: Kind,
    page_phase: &str,
) -> Vec<FieldDoc> {
    let (phase, method) = kind.phase(page_phase);
    ctx.generation
        .registry
        .described(subject, strategy)
        .and_then(|d| {
            d.docs
                .iter()
                .find(|doc| doc.phase == phase && doc.method == method && doc.param.is_none())
        })
        .map(|doc| doc.fields.clone())
        .unwrap_or_default()
}

/// Links from one sign-in page to the others of the resource.
fn other_ways(ctx: &Ctx<'_>, subject: &str, here: &str, return_to: Option<&str>) -> Vec<Value> {
    let registry = &ctx.generation.registry;
    let suffix = return_to
        .map(|r| {
            let encoded: String = form_urlencoded::byte_serialize(r.as_bytes()).collect();
            format!("?return_to={encoded}")
        })
        .unwrap_or_default();
    let mut links = Vec::new();
    for (name, live) in registry.strategies_of(subject) {
        let Some(described) = registry.described(subject, name) else {
            continue;
        };
        let candidates: &[(&str, &str)] = match described.type_name.as_str() {
            "password" => &[
                ("sign_in", "Sign in with a password"),
                ("register", "Create an account"),
                ("reset_request", "Forgot your password?"),
            ],
            "magic_link" => &[("request", "Sign in with a link sent to you")],
            _ => &[],
        };
        for (phase, text) in candidates {
            let path = format!("{}/{subject}/{name}/{phase}", ctx.base());
            if path != here && live.phases().iter().any(|p| p.name == *phase) {
                links.push(json!({ "href": format!("{path}{suffix}"), "text": text }));
            }
        }
    }
    links
}

/// A phase's form page.
#[allow(clippy::too_many_arguments)]
fn form_page(
    ctx: &Ctx<'_>,
    subject: &str,
    strategy: &str,
    phase: &str,
    kind: Kind,
    values: &BTreeMap<String, String>,
    shown: &Shown,
    status: StatusCode,
) -> Reply {
    let resource = ctx.generation.registry.resource(subject);
    let docs = phase_fields(ctx, subject, strategy, kind, phase);
    let (heading, intro, submit) = kind.texts();
    // A link's token arrives as `token`; the reset form names it `reset_token`.
    let mut values = values.clone();
    if kind == Kind::Reset
        && !values.contains_key("reset_token")
        && let Some(t) = values.get("token").cloned()
    {
        values.insert("reset_token".into(), t);
    }
    let (fields, mut hidden) = form_fields(resource, kind, &docs, &values, shown);
    let needs_token = matches!(kind, Kind::Reset | Kind::MagicSignIn | Kind::TotpVerify);
    let has_token = hidden
        .iter()
        .any(|h| h["value"].as_str().is_some_and(|v| !v.is_empty()));
    if needs_token && !has_token {
        return ctx.message(
            StatusCode::BAD_REQUEST,
            "This link is incomplete",
            "Open the link from your message again, or ask for a new one.",
            json!(other_ways(ctx, subject, "", None)),
        );
    }
    let return_to = values
        .get(RETURN_TO)
        .filter(|r| redirect::check(r, &ctx.pages.config.allowed_redirects, ctx.base()).is_some());
    if let Some(r) = return_to {
        hidden.push(json!({ "name": RETURN_TO, "value": r }));
    }
    let here = format!("{}/{subject}/{strategy}/{phase}", ctx.base());
    let links = match kind {
        Kind::SignIn | Kind::Register | Kind::ResetRequest | Kind::MagicRequest => {
            other_ways(ctx, subject, &here, return_to.map(String::as_str))
        }
        _ => Vec::new(),
    };
    let mut page = json!({
        "heading": heading,
        "intro": intro,
        "action": here,
        "submit": submit,
        "fields": fields,
        "hidden": hidden,
        "links": links,
    });
    if let Some(qr) = values.get("qr_svg") {
        page["qr_svg"] = json!(qr);
        page["secret"] = json!(values.get("secret").cloned().unwrap_or_default());
    }
    ctx.render("form.html", status, page, shown)
}

/// The CSRF check of a state-changing form: `None` when it passes, else the `403` page.
fn refuse_without_csrf(
    ctx: &Ctx<'_>,
    headers: &HeaderMap,
    form: &BTreeMap<String, String>,
) -> Option<Reply> {
    let sent = cookie(headers, &csrf_cookie_name(&ctx.pages.config));
    if csrf::verify(
        &ctx.pages.csrf_key,
        sent.as_deref(),
        form.get(csrf::FIELD).map(String::as_str),
    ) {
        return None;
    }
    Some(ctx.message(
        StatusCode::FORBIDDEN,
        "This form has expired",
        "The form was sent without its security token, or with one that does not match. Go back, reload the page and try again.",
        json!([]),
    ))
}

/// A form of a phase page, posted: the same phase as the JSON API, rendered as HTML.
async fn submit<B>(
    ctx: &Ctx<'_>,
    subject: &str,
    strategy: &str,
    page_phase: &str,
    kind: Kind,
    req: Request<B>,
) -> Result<Reply, Failure>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let generation = ctx.generation;
    let headers = req.headers().clone();
    let client_ip = super::client_ip::client_ip(
        ctx.peer.ip(),
        &headers,
        &generation.server.trusted_proxies,
        generation.server.forwarded_header,
    );
    let form = read_form(req, generation.server.max_body_bytes).await?;
    if let Some(refused) = refuse_without_csrf(ctx, &headers, &form) {
        return Ok(refused);
    }
    let live = generation
        .registry
        .strategy(subject, strategy)
        .ok_or(Failure::NotFound)?;
    let (phase_name, method) = kind.phase(page_phase);
    let spec = live
        .phases()
        .iter()
        .find(|p| p.name == phase_name && p.param.is_none() && p.methods.contains(&method))
        .ok_or(Failure::NotFound)?;
    let session = match spec.access {
        Access::Public => None,
        Access::Session => match ctx.session(subject, &headers).await? {
            Some(s) => Some(s),
            None => return Ok(not_signed_in(ctx, subject)),
        },
    };
    let resource = generation.registry.resource(subject);
    let docs = phase_fields(ctx, subject, strategy, kind, page_phase);
    let mut params = form_params(resource, &docs, &form);
    if kind == Kind::MagicSignIn && !params.contains_key("token") {
        return Ok(form_page(
            ctx,
            subject,
            strategy,
            page_phase,
            kind,
            &form,
            &Shown::default(),
            StatusCode::BAD_REQUEST,
        ));
    }
    if kind == Kind::Reset
        && let Some(t) = params.remove("token")
    {
        params.entry("reset_token").or_insert(t);
    }
    let request = PhaseRequest {
        method,
        params,
        client_ip: Some(client_ip),
        param: None,
        session: session.clone(),
    };
    let via = match spec.access {
        Access::Public => Via::FirstFactor,
        Access::Session => Via::Session,
    };
    let return_to = form.get(RETURN_TO).map(String::as_str);
    let verdict = live.handle(spec.name, request).await?;
    let settled = match handlers::settle(generation, subject, strategy, verdict, via).await {
        Ok(s) => s,
        Err(failure) => {
            return Ok(refused(
                ctx,
                subject,
                strategy,
                page_phase,
                kind,
                &form,
                &headers,
                session.as_ref(),
                failure,
            )
            .await);
        }
    };
    match settled {
        Settled::SignedIn(SignedIn::Token { token: Some(token), .. }) => {
            let location = if kind == Kind::ChangePassword {
                format!("{}?done=password", ctx.account_path(subject))
            } else {
                ctx.after_sign_in(subject, return_to)
            };
            Ok(ctx.signed_in(&token, &location))
        }
        Settled::SignedIn(SignedIn::Token { token: None, .. }) => Ok(ctx.message(
            StatusCode::OK,
            "Check your inbox",
            "Your account was created. Confirm your address with the link we sent you, then sign in.",
            json!(ctx.sign_in_path(subject).map(|p| vec![json!({ "href": p, "text": "Sign in" })]).unwrap_or_default()),
        )),
        Settled::SignedIn(SignedIn::Continue { step, token })
        | Settled::Other(Verdict::Continue { step, token }) => {
            let mut values = BTreeMap::new();
            values.insert("token".to_string(), token.token);
            if let Some(r) = return_to {
                values.insert(RETURN_TO.to_string(), r.to_string());
            }
            Ok(form_page(ctx, subject, &step, "verify", Kind::TotpVerify, &values, &Shown::default(), StatusCode::OK))
        }
        Settled::Other(Verdict::Accepted) => Ok(ctx.message(
            StatusCode::ACCEPTED,
            "Check your inbox",
            "If an account exists for what you entered, we have sent it a message with a link. The link works once, for a limited time.",
            json!([]),
        )),
        Settled::Other(Verdict::NoContent) => {
            let done = if kind == Kind::TotpTurnOff { "totp_off" } else { "saved" };
            Ok(ctx.see_other(&format!("{}?done={done}", ctx.account_path(subject))))
        }
        Settled::Other(Verdict::Json { body, .. }) => Ok(json_page(ctx, subject, strategy, kind, &body)),
        Settled::Other(Verdict::Rejected(r)) => Ok(refused(ctx, subject, strategy, page_phase, kind, &form, &headers, session.as_ref(), Failure::Rejected(r)).await),
        Settled::Other(Verdict::Authenticated { .. }) => {
            Err(Failure::Internal("a settled verdict is still a sign-in".into()))
        }
    }
}

/// A refused form, shown again with the JSON API's messages (on the account page for the
/// forms that live there).
#[allow(clippy::too_many_arguments)]
async fn refused(
    ctx: &Ctx<'_>,
    subject: &str,
    strategy: &str,
    page_phase: &str,
    kind: Kind,
    form: &BTreeMap<String, String>,
    headers: &HeaderMap,
    session: Option<&Session>,
    failure: Failure,
) -> Reply {
    if matches!(failure, Failure::Internal(_) | Failure::Unavailable(_)) {
        return ctx.failure(failure);
    }
    let (status, shown, header) = shown_failure(failure);
    let mut reply = match (kind, session) {
        (Kind::ChangePassword | Kind::TotpTurnOff | Kind::KeyCreate, Some(_)) => {
            account(ctx, subject, headers, None, Some(strategy), &shown)
                .await
                .map(|mut r| {
                    *r.status_mut() = status;
                    r
                })
                .unwrap_or_else(|f| ctx.failure(f))
        }
        (Kind::TotpConfirmSetup, _) => {
            // The QR code is not sent back; the same setup token and a new code may be tried.
            let mut values = form.clone();
            values.remove("code");
            form_page(
                ctx, subject, strategy, page_phase, kind, &values, &shown, status,
            )
        }
        _ => form_page(
            ctx, subject, strategy, page_phase, kind, form, &shown, status,
        ),
    };
    if let Some((name, value)) = header {
        reply.headers_mut().insert(name, value);
    }
    reply
}

/// A phase's JSON answer as a page: the TOTP setup (QR code), its recovery codes, a new API
/// key (shown once).
fn json_page(ctx: &Ctx<'_>, subject: &str, strategy: &str, kind: Kind, body: &Value) -> Reply {
    let account = json!([{ "href": ctx.account_path(subject), "text": "Back to your account" }]);
    match kind {
        Kind::TotpSetup => {
            let uri = body["otpauth_uri"].as_str().unwrap_or_default();
            let svg = match qrcode::QrCode::new(uri.as_bytes()) {
                Ok(code) => code
                    .render::<qrcode::render::svg::Color<'_>>()
                    .min_dimensions(200, 200)
                    .quiet_zone(true)
                    .build(),
                Err(_) => String::new(),
            };
            let mut values = BTreeMap::new();
            values.insert(
                "setup_token".to_string(),
                body["setup_token"].as_str().unwrap_or_default().to_string(),
            );
            values.insert(
                "qr_svg".to_string(),
                base64::engine::general_purpose::STANDARD.encode(svg),
            );
            values.insert(
                "secret".to_string(),
                body["secret"].as_str().unwrap_or_default().to_string(),
            );
            form_page(ctx, subject, strategy, "confirm_setup", Kind::TotpConfirmSetup, &values, &Shown::default(), StatusCode::OK)
        }
        Kind::TotpConfirmSetup => ctx.render(
            "message.html",
            StatusCode::OK,
            json!({
                "heading": "Two-step verification is on",
                "text": "Keep these recovery codes somewhere safe. Each works once, if you cannot use the app. They are shown only now.",
                "items": body["recovery_codes"],
                "links": account,
            }),
            &Shown::default(),
        ),
        Kind::KeyCreate => ctx.render(
            "message.html",
            StatusCode::CREATED,
            json!({
                "heading": "Your new API key",
                "text": format!("Copy the key \u{201c}{}\u{201d} now: it is shown only once.", body["name"].as_str().unwrap_or_default()),
                "secret": body["key"],
                "links": account,
            }),
            &Shown::default(),
        ),
        _ => ctx.message(StatusCode::OK, "Done", "", account),
    }
}

fn not_signed_in(ctx: &Ctx<'_>, subject: &str) -> Reply {
    ctx.message(
        StatusCode::UNAUTHORIZED,
        "You are not signed in",
        "Your session has ended. Sign in again.",
        json!(
            ctx.sign_in_path(subject)
                .map(|p| vec![json!({ "href": p, "text": "Sign in" })])
                .unwrap_or_default()
        ),
    )
}

/// The account page: the user, and forms to change the password, set up or turn off TOTP,
/// make and delete API keys, sign out.
async fn account(
    ctx: &Ctx<'_>,
    subject: &str,
    headers: &HeaderMap,
    notice: Option<&str>,
    errors_of: Option<&str>,
    shown: &Shown,
) -> Result<Reply, Failure> {
    let Some(session) = ctx.session(subject, headers).await? else {
        if let Some(path) = ctx.sign_in_path(subject) {
            return Ok(ctx.see_other(&path));
        }
        return Ok(not_signed_in(ctx, subject));
    };
    let generation = ctx.generation;
    let registry = &generation.registry;
    let resource = registry.resource(subject);
    let view = sessions::view(generation, subject, &session.user);
    let attributes: Vec<Value> = view
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Null => "—".to_string(),
                Value::Bool(true) => "on".to_string(),
                Value::Bool(false) => "off".to_string(),
                other => other.to_string(),
            };
            // A second factor shows under what it is, not under its strategy's name.
            let is_totp = registry
                .described(subject, k)
                .is_some_and(|d| d.type_name == "totp");
            let shown = if is_totp {
                "Two-step verification".to_string()
            } else {
                label(k)
            };
            json!({ "label": shown, "value": text })
        })
        .collect();
    let no_shown = Shown::default();
    let mut forms = Vec::new();
    for (name, live) in registry.strategies_of(subject) {
        let Some(described) = registry.described(subject, name) else {
            continue;
        };
        let shown_here = if errors_of == Some(name) {
            shown
        } else {
            &no_shown
        };
        let has = |phase: &str| live.phases().iter().any(|p| p.name == phase);
        let action = |phase: &str| format!("{}/{subject}/{name}/{phase}", ctx.base());
        let fields = |kind: Kind, phase: &str| {
            let docs = phase_fields(ctx, subject, name, kind, phase);
            form_fields(resource, kind, &docs, &BTreeMap::new(), shown_here).0
        };
        match described.type_name.as_str() {
            "password" if has("change_password") => forms.push(json!({
                "id": format!("{name}-change"),
                "heading": "Change your password",
                "action": action("change_password"),
                "fields": fields(Kind::ChangePassword, "change_password"),
                "submit": "Change the password",
            })),
            "totp" => {
                let on = view[name].as_bool().unwrap_or(false);
                if on && has("") {
                    forms.push(json!({
                        "id": format!("{name}-off"),
                        "heading": "Two-step verification is on",
                        "intro": "To turn it off, enter a current code or a recovery code.",
                        "action": action("turn_off"),
                        "fields": fields(Kind::TotpTurnOff, "turn_off"),
                        "submit": "Turn off",
                        "danger": true,
                    }));
                } else if !on && has("setup") {
                    forms.push(json!({
                        "id": format!("{name}-setup"),
                        "heading": "Two-step verification",
                        "intro": "Ask for a code from an authenticator app each time you sign in.",
                        "action": action("setup"),
                        "fields": [],
                        "submit": "Set up two-step verification",
                    }));
                }
            }
            "api_key" if has("keys") => {
                let listed = live
                    .handle(
                        "keys",
                        PhaseRequest {
                            method: PhaseMethod::Get,
                            params: Params::new(),
                            client_ip: None,
                            param: None,
                            session: Some(session.clone()),
                        },
                    )
                    .await?;
                let items: Vec<Value> = match listed {
                    Verdict::Json { body, .. } => body["keys"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|k| {
                            let id = k["id"].as_str().unwrap_or_default();
                            let expires = k["expires_at"].as_str().map(|e| format!(", expires {e}")).unwrap_or_default();
                            json!({
                                "text": format!("{} (created {}{expires})", k["name"].as_str().unwrap_or_default(), k["created_at"].as_str().unwrap_or_default()),
                                "action": format!("{}/{subject}/{name}/keys/{id}", ctx.base()),
                                "button": "Delete",
                            })
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                forms.push(json!({
                    "id": format!("{name}-keys"),
                    "heading": "API keys",
                    "intro": if items.is_empty() { "You have no API keys." } else { "Your API keys:" },
                    "items": items,
                    "action": action("keys"),
                    "fields": fields(Kind::KeyCreate, "keys"),
                    "submit": "Create an API key",
                }));
            }
            _ => {}
        }
    }
    forms.push(json!({
        "id": "sign-out",
        "heading": "Sign out",
        "action": format!("{}/{subject}/sign_out", ctx.base()),
        "fields": [],
        "submit": "Sign out",
    }));
    forms.push(json!({
        "id": "sign-out-all",
        "heading": "Sign out everywhere",
        "intro": "Ends every session of your account, on every device, this one included.",
        "action": format!("{}/{subject}/sign_out_all", ctx.base()),
        "fields": [],
        "submit": "Sign out everywhere",
        "danger": true,
    }));
    let notice = match notice {
        Some("password") => Some("Your password was changed."),
        Some("totp_off") => Some("Two-step verification is off."),
        Some("saved") => Some("Saved."),
        _ => None,
    };
    let page = json!({
        "heading": "Your account",
        "notice": notice,
        "attributes": attributes,
        "forms": forms,
    });
    Ok(ctx.render("account.html", StatusCode::OK, page, shown))
}

/// `POST {base}/{subject}/sign_out[_all]`: the cookie's session ends (or every session of
/// the user), the cookie is removed, and the browser goes to the sign-in page.
async fn sign_out<B>(
    ctx: &Ctx<'_>,
    subject: &str,
    everywhere: bool,
    req: Request<B>,
) -> Result<Reply, Failure>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let headers = req.headers().clone();
    let form = read_form(req, ctx.generation.server.max_body_bytes).await?;
    if let Some(refused) = refuse_without_csrf(ctx, &headers, &form) {
        return Ok(refused);
    }
    if let Some(session) = ctx.session(subject, &headers).await? {
        if everywhere {
            sessions::sign_out_everywhere(ctx.generation, subject, &session.user).await?;
        } else {
            sessions::sign_out(ctx.generation, &session).await??;
        }
    }
    let mut reply = match ctx.sign_in_path(subject) {
        Some(path) => ctx.see_other(&path),
        None => ctx.message(
            StatusCode::OK,
            "Signed out",
            "You are signed out.",
            json!([]),
        ),
    };
    clear_session_cookie(&ctx.pages.config, &mut reply);
    Ok(reply)
}

/// `POST {base}/{subject}/{strategy}/keys/{id}`: the API key strategy's delete phase.
async fn delete_key<B>(
    ctx: &Ctx<'_>,
    subject: &str,
    strategy: &str,
    id: &str,
    req: Request<B>,
) -> Result<Reply, Failure>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let headers = req.headers().clone();
    let form = read_form(req, ctx.generation.server.max_body_bytes).await?;
    if let Some(refused) = refuse_without_csrf(ctx, &headers, &form) {
        return Ok(refused);
    }
    let Some(session) = ctx.session(subject, &headers).await? else {
        return Ok(not_signed_in(ctx, subject));
    };
    let live = ctx
        .generation
        .registry
        .strategy(subject, strategy)
        .ok_or(Failure::NotFound)?;
    let verdict = live
        .handle(
            "keys",
            PhaseRequest {
                method: PhaseMethod::Delete,
                params: Params::new(),
                client_ip: None,
                param: Some(id.to_string()),
                session: Some(session),
            },
        )
        .await?;
    match verdict {
        Verdict::Rejected(r) => Err(Failure::Rejected(r)),
        _ => Ok(ctx.see_other(&format!("{}?done=saved", ctx.account_path(subject)))),
    }
}

/// `GET|POST {base}/{subject}/confirm?confirm=...`: a GET shows a button (a link scanner
/// confirms nothing); the POST confirms through [`crate::accounts::confirm`].
async fn confirm<B>(ctx: &Ctx<'_>, subject: &str, req: Request<B>) -> Result<Reply, Failure>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let action = format!("{}/{subject}/confirm", ctx.base());
    if req.method() != Method::POST {
        let query = query_map(req.uri().query());
        let Some(token) = query
            .get("confirm")
            .or_else(|| query.get("token"))
            .filter(|t| !t.is_empty())
        else {
            return Ok(ctx.message(
                StatusCode::BAD_REQUEST,
                "This link is incomplete",
                "Open the link from your message again.",
                json!([]),
            ));
        };
        let page = json!({
            "heading": "Confirm your address",
            "text": "Press the button to confirm your address.",
            "button": { "action": action, "label": "Confirm", "hidden": [{ "name": "confirm", "value": token }] },
        });
        return Ok(ctx.render("message.html", StatusCode::OK, page, &Shown::default()));
    }
    let headers = req.headers().clone();
    let form = read_form(req, ctx.generation.server.max_body_bytes).await?;
    if let Some(refused) = refuse_without_csrf(ctx, &headers, &form) {
        return Ok(refused);
    }
    let Some(token) = form.get("confirm").filter(|t| !t.is_empty()) else {
        return Err(Failure::Rejected(Rejection::Invalid(
            authd_strategy_api::FieldErrors::one("confirm", "is required"),
        )));
    };
    crate::accounts::confirm(ctx.generation, subject, token).await??;
    let links = match ctx.session(subject, &headers).await? {
        Some(_) => vec![json!({ "href": ctx.account_path(subject), "text": "Go to your account" })],
        None => ctx
            .sign_in_path(subject)
            .map(|p| vec![json!({ "href": p, "text": "Sign in" })])
            .unwrap_or_default(),
    };
    Ok(ctx.message(
        StatusCode::OK,
        "Your address is confirmed",
        "Thank you.",
        json!(links),
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn labels_name_the_configured_field() {
        assert_eq!(label("password_confirmation"), "Password confirmation");
        assert_eq!(label("email"), "Email");
        assert_eq!(label("e-mail"), "E mail");
    }
}
