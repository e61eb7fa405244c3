//! Database URLs read as text (no connection): the checks `config` validates with and the
//! masking every printer of a URL uses. Apart from `store`, the only module that names a
//! backend crate; it imports nothing of the daemon, so `config` and `store` stay out of a circle.

/// `url` with any password in it replaced by `***` (for logs, `authd check`, diffs).
pub fn mask_url(url: &str) -> String {
    authd_store_postgres::mask_url(url)
}

/// Whether `url` is a PostgreSQL URL authd can use, read as text only (no connection). The
/// reason never repeats the URL.
///
/// # Errors
/// Why it is not.
pub fn check_url(url: &str) -> Result<(), String> {
    authd_store_postgres::ConnectionUrl::parse(url)
        .map(|_| ())
        .map_err(|e| e.to_string())
}
