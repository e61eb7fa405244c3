//! The config parser and validator must never panic, whatever the file says.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        match authd::parse_config(text) {
            Ok(config) => {
                // What `authd check` prints must not panic either.
                let _ = authd::cli::describe(std::path::Path::new("fuzz.toml"), &config);
                let _ = authd::registry::routes(&config);
            }
            Err(problems) => {
                assert!(!problems.0.is_empty(), "an error with no problem in it");
                let _ = problems.to_string();
            }
        }
    }
});
