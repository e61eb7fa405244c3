//! End-to-end tests: the real daemon on a real port, a temporary redb file, a config written
//! by the test, and a real HTTP client. One binary (see STYLE.md: every file in tests/ would
//! be another binary to link).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod abuse;
mod accounts;
mod admin;
mod api_keys;
mod cli;
mod delivery;
mod events;
mod flows;
mod hardening;
mod http_errors;
mod keys;
mod magic_link;
mod mail;
mod metrics;
mod multi;
mod openapi;
mod pages;
mod postgres;
mod reload;
mod restart;
mod slow;
mod tokens;
mod totp;
mod util;
