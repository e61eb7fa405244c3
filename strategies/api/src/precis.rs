//! Prepares identity values so that two strings that look the same name the same account.
//!
//! Lower-casing alone let NFC and NFD `é`, `ß` and `ss`, `Σ`/`σ`/`ς`, fullwidth letters, a
//! trailing space or a zero-width character give separate accounts for one visible name. This
//! module applies the PRECIS username profiles of RFC 8265 (through the `precis-profiles`
//! crate) and, for case-insensitive values, Unicode Default Case Folding on top of them.
//!
//! # What the attribute types guarantee
//!
//! Both types first drop leading and trailing white space (Unicode `White_Space`), then
//! refuse an empty value and any character that the PRECIS `IdentifierClass` does not allow:
//! spaces and other white space inside the value, control characters, invisible characters
//! (zero-width space, soft hyphen, byte order mark, and other default-ignorable code
//! points), compatibility characters (ligatures such as `ﬃ`, circled, superscript and
//! other presentation forms; fullwidth and halfwidth forms are mapped instead, see below),
//! symbols and punctuation outside ASCII (emoji among them), private-use and unassigned code
//! points, joiners used outside the contexts where RFC 8264 allows them, and a mix of
//! right-to-left and left-to-right text that breaks the bidi rule of RFC 5893. All printable
//! ASCII is allowed, so e-mail addresses (`first.last+tag@example.com`) stay valid.
//!
//! - **`string`** (RFC 8265 `UsernameCasePreserved`): fullwidth and halfwidth forms are
//!   mapped to their ordinary forms (`ＡＢＣ` is `ABC`) and the value is put in Unicode
//!   Normalization Form C, so composed and decomposed accents are one value. Case is kept:
//!   `Alice` and `alice` are different values.
//! - **`ci_string`** (RFC 8265 `UsernameCaseMapped`, with Default Case Folding): as `string`,
//!   then case-folded and put in NFC again, so that `Alice`, `ALICE` and `ａｌｉｃｅ` are one
//!   value, and so are `Straße`/`STRASSE`/`strasse` and `ΟΔΥΣΣΕΥΣ`/`οδυσσευς`. RFC 8265
//!   itself maps case with `toLowerCase()`, which keeps `ß` and final `ς` distinct from `ss`
//!   and `σ`; we fold them as well (as RFC 7613 did), because an identity that looks the
//!   same to a reader must not make a second account.
//!
//! The PRECIS tables are those of the IANA registry, built on Unicode 6.3: letters that
//! Unicode assigned later (for example Cherokee small letters or Georgian Mtavruli) are
//! refused as unassigned.
//!
//! Preparing a prepared value gives it back unchanged; a value that would not satisfy that
//! is refused rather than stored.
//!
//! This module must not log or echo the value it was given (errors name the kind of
//! character only), and must not depend on the daemon: it takes and returns `&str`/`String`.

use std::borrow::Cow;
use std::fmt;

use icu_casemap::CaseMapper;
use icu_properties::props::{DefaultIgnorableCodePoint, GeneralCategory};
use icu_properties::{CodePointMapData, CodePointSetData};
use precis_core::profile::PrecisFastInvocation;
use precis_core::{CodepointInfo, DerivedPropertyValue, UnexpectedError};
use precis_profiles::{UsernameCaseMapped, UsernameCasePreserved};
use unicode_normalization::UnicodeNormalization;

/// Why a value cannot be an identity. The messages never contain the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PrepareError {
    /// Nothing is left once leading and trailing white space are removed.
    Empty,
    /// The value contains a character of this kind, which identities may not contain.
    Disallowed(CharKind),
    /// Right-to-left characters are mixed with others in a way the bidi rule refuses.
    Bidi,
    /// Preparing the prepared value again would change it, so it cannot be a stable key.
    Unstable,
}

/// The kind of character that made a value unacceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CharKind {
    /// A space or other white space inside the value.
    Space,
    /// A control character (`U+0000`..`U+001F`, `U+007F`..`U+009F`).
    Control,
    /// An invisible or formatting character: zero-width space, soft hyphen, byte order mark.
    Invisible,
    /// A compatibility form, such as the ligature `ﬃ` or a circled or superscript letter.
    Compatibility,
    /// A symbol outside ASCII, emoji included.
    Symbol,
    /// Punctuation outside ASCII.
    Punctuation,
    /// A private-use or surrogate code point.
    PrivateUse,
    /// A code point that Unicode has not assigned.
    Unassigned,
    /// A joiner or similar character outside the context where it is allowed.
    OutOfContext,
    /// Any other character that the PRECIS identifier class refuses.
    Other,
}

impl fmt::Display for CharKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CharKind::Space => "spaces are not allowed inside the value",
            CharKind::Control => "control characters are not allowed",
            CharKind::Invisible => {
                "invisible characters (such as zero-width spaces or soft hyphens) are not allowed"
            }
            CharKind::Compatibility => {
                "compatibility characters (such as ligatures, circled or superscript letters) \
                 are not allowed; type the plain letters instead"
            }
            CharKind::Symbol => "symbols and emoji outside ASCII are not allowed",
            CharKind::Punctuation => "punctuation outside ASCII is not allowed",
            CharKind::PrivateUse => "private-use characters are not allowed",
            CharKind::Unassigned => "unassigned Unicode code points are not allowed",
            CharKind::OutOfContext => "a joining character is used where it is not allowed",
            CharKind::Other => "it contains a character that is not allowed",
        })
    }
}

impl fmt::Display for PrepareError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrepareError::Empty => f.write_str("must not be empty or only white space"),
            PrepareError::Disallowed(kind) => kind.fmt(f),
            PrepareError::Bidi => f.write_str(
                "mixes right-to-left and left-to-right characters in a way that is not allowed",
            ),
            PrepareError::Unstable => {
                f.write_str("cannot be put into a stable form; use plainer characters")
            }
        }
    }
}

impl std::error::Error for PrepareError {}

/// Prepares a case-insensitive identity (`ci_string`): RFC 8265 `UsernameCaseMapped` after
/// trimming white space, with Unicode Default Case Folding and NFC after it.
///
/// ```
/// use authd_strategy_api::precis::prepare_ci;
/// assert_eq!(prepare_ci(" Straße@Example.com ").unwrap(), "strasse@example.com");
/// ```
///
/// # Errors
///
/// [`PrepareError::Empty`] when nothing but white space was given,
/// [`PrepareError::Disallowed`] naming the kind of the first character that identities may
/// not contain, [`PrepareError::Bidi`] when right-to-left text breaks the bidi rule, and
/// [`PrepareError::Unstable`] in the unlikely case that the result would change if prepared
/// again.
pub fn prepare_ci(value: &str) -> Result<String, PrepareError> {
    stable(value, case_mapped)
}

/// Prepares a case-sensitive identity (`string`): RFC 8265 `UsernameCasePreserved` after
/// trimming white space (width mapping and NFC; case is kept).
///
/// ```
/// use authd_strategy_api::precis::prepare_exact;
/// assert_eq!(prepare_exact("Ｂob").unwrap(), "Bob");
/// ```
///
/// # Errors
///
/// As for [`prepare_ci`].
pub fn prepare_exact(value: &str) -> Result<String, PrepareError> {
    stable(value, case_preserved)
}

/// Runs `prepare` and refuses a result that a second run would change, so that a stored
/// value is always its own prepared form.
fn stable(
    value: &str,
    prepare: fn(&str) -> Result<String, PrepareError>,
) -> Result<String, PrepareError> {
    let once = prepare(value)?;
    match prepare(&once) {
        Ok(twice) if twice == once => Ok(once),
        _ => Err(PrepareError::Unstable),
    }
}

fn case_mapped(value: &str) -> Result<String, PrepareError> {
    let trimmed = non_empty(value)?;
    let enforced =
        <UsernameCaseMapped as PrecisFastInvocation>::enforce(trimmed).map_err(from_precis)?;
    // RFC 8265's toLowerCase() leaves `ß` and `ς`; full case folding maps them to `ss` and
    // `σ`. Folding can undo NFC (`ǰ` folds to `j` + combining caron), hence NFC again.
    let folded = CaseMapper::new().fold_string(&enforced).into_owned();
    let normalized = if unicode_normalization::is_nfc(&folded) {
        folded
    } else {
        folded.nfc().collect()
    };
    // Folding only makes lower-case letters, but check the class again rather than trust it.
    <UsernameCasePreserved as PrecisFastInvocation>::enforce(normalized.as_str())
        .map(Cow::into_owned)
        .map_err(from_precis)
}

fn case_preserved(value: &str) -> Result<String, PrepareError> {
    let trimmed = non_empty(value)?;
    <UsernameCasePreserved as PrecisFastInvocation>::enforce(trimmed)
        .map(Cow::into_owned)
        .map_err(from_precis)
}

fn non_empty(value: &str) -> Result<&str, PrepareError> {
    match value.trim() {
        "" => Err(PrepareError::Empty),
        trimmed => Ok(trimmed),
    }
}

fn from_precis(error: precis_core::Error) -> PrepareError {
    match error {
        // The value is not empty when it reaches the profile, and stays non-empty under
        // width mapping, case mapping and NFC: `Invalid` is the directionality rule.
        precis_core::Error::Invalid => PrepareError::Bidi,
        precis_core::Error::BadCodepoint(info) => PrepareError::Disallowed(kind_of(&info)),
        precis_core::Error::Unexpected(
            UnexpectedError::ContextRuleNotApplicable(_) | UnexpectedError::MissingContextRule(_),
        ) => PrepareError::Disallowed(CharKind::OutOfContext),
        precis_core::Error::Unexpected(_) => PrepareError::Disallowed(CharKind::Other),
    }
}

/// Names the kind of a refused code point, for a message that does not show the value.
fn kind_of(info: &CodepointInfo) -> CharKind {
    match info.property {
        DerivedPropertyValue::ContextJ | DerivedPropertyValue::ContextO => {
            return CharKind::OutOfContext;
        }
        DerivedPropertyValue::Unassigned => return CharKind::Unassigned,
        _ => {}
    }
    let Some(c) = char::from_u32(info.cp) else {
        return CharKind::Other;
    };
    let category = CodePointMapData::<GeneralCategory>::new().get(c);
    if c.is_whitespace()
        || matches!(
            category,
            GeneralCategory::SpaceSeparator
                | GeneralCategory::LineSeparator
                | GeneralCategory::ParagraphSeparator
        )
    {
        return CharKind::Space;
    }
    if category == GeneralCategory::Control {
        return CharKind::Control;
    }
    if category == GeneralCategory::Format
        || CodePointSetData::new::<DefaultIgnorableCodePoint>().contains(c)
    {
        return CharKind::Invisible;
    }
    if matches!(
        category,
        GeneralCategory::PrivateUse | GeneralCategory::Surrogate
    ) {
        return CharKind::PrivateUse;
    }
    if category == GeneralCategory::Unassigned {
        return CharKind::Unassigned;
    }
    let alone = c.to_string();
    if alone.nfkc().ne(alone.chars()) {
        return CharKind::Compatibility;
    }
    match category {
        GeneralCategory::MathSymbol
        | GeneralCategory::CurrencySymbol
        | GeneralCategory::ModifierSymbol
        | GeneralCategory::OtherSymbol => CharKind::Symbol,
        GeneralCategory::DashPunctuation
        | GeneralCategory::OpenPunctuation
        | GeneralCategory::ClosePunctuation
        | GeneralCategory::ConnectorPunctuation
        | GeneralCategory::OtherPunctuation
        | GeneralCategory::InitialPunctuation
        | GeneralCategory::FinalPunctuation => CharKind::Punctuation,
        _ => CharKind::Other,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// A pair must prepare to one value, or one of them (the look-alike) must be refused:
    /// either way the two cannot be two accounts.
    fn same_or_refused(a: &str, b: &str) {
        if let (Ok(x), Ok(y)) = (prepare_ci(a), prepare_ci(b)) {
            assert_eq!(x, y, "{a:?} and {b:?} must be one identity");
        }
    }

    fn same(a: &str, b: &str) {
        assert_eq!(
            prepare_ci(a).unwrap(),
            prepare_ci(b).unwrap(),
            "{a:?} and {b:?} must prepare to one value"
        );
    }

    fn refused(value: &str) -> PrepareError {
        match prepare_ci(value) {
            Ok(v) => panic!("{value:?} must be refused, got {v:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn composed_and_decomposed_accents_are_one_identity() {
        same("caf\u{e9}", "cafe\u{301}");
        same("CAF\u{c9}", "cafe\u{301}");
        assert_eq!(prepare_ci("cafe\u{301}").unwrap(), "caf\u{e9}");
        assert_eq!(prepare_exact("cafe\u{301}").unwrap(), "caf\u{e9}");
    }

    #[test]
    fn surrounding_white_space_is_trimmed() {
        same(" alice ", "alice");
        same("\talice\n", "ALICE");
        same("\u{3000}alice\u{a0}", "alice");
        assert_eq!(prepare_exact("  Alice ").unwrap(), "Alice");
    }

    #[test]
    fn spaces_inside_are_refused() {
        assert_eq!(
            refused("alice smith"),
            PrepareError::Disallowed(CharKind::Space)
        );
        assert_eq!(
            prepare_exact("alice\u{a0}smith"),
            Err(PrepareError::Disallowed(CharKind::Space))
        );
    }

    #[test]
    fn zero_width_characters_are_refused() {
        for zw in ["\u{200b}", "\u{200c}", "\u{200d}", "\u{2060}", "\u{feff}"] {
            let value = format!("ali{zw}ce");
            assert!(prepare_ci(&value).is_err(), "{value:?}");
            assert!(prepare_exact(&value).is_err(), "{value:?}");
            same_or_refused(&value, "alice");
        }
        assert_eq!(
            refused("ali\u{200b}ce"),
            PrepareError::Disallowed(CharKind::Invisible)
        );
        assert_eq!(
            refused("ali\u{200d}ce"),
            PrepareError::Disallowed(CharKind::OutOfContext)
        );
    }

    #[test]
    fn an_identity_of_one_zero_width_space_is_refused() {
        assert!(prepare_ci("\u{200b}").is_err());
        assert!(prepare_exact("\u{200b}").is_err());
        assert!(prepare_ci(" \u{200b} ").is_err());
    }

    #[test]
    fn soft_hyphen_is_refused() {
        assert_eq!(
            refused("ali\u{ad}ce"),
            PrepareError::Disallowed(CharKind::Invisible)
        );
        same_or_refused("ali\u{ad}ce", "alice");
    }

    #[test]
    fn sharp_s_folds_to_ss() {
        same("stra\u{df}e", "strasse");
        same("STRASSE", "Stra\u{df}e");
        same("stra\u{1e9e}e", "strasse");
        assert_eq!(prepare_ci("Stra\u{df}e").unwrap(), "strasse");
        // Case-preserving identities keep `ß`: only the case-insensitive type folds.
        assert_eq!(prepare_exact("Stra\u{df}e").unwrap(), "Stra\u{df}e");
    }

    #[test]
    fn ligatures_are_refused() {
        assert_eq!(
            refused("o\u{fb03}ce"),
            PrepareError::Disallowed(CharKind::Compatibility)
        );
        same_or_refused("o\u{fb03}ce", "office");
        assert!(prepare_exact("o\u{fb03}ce").is_err());
    }

    #[test]
    fn fullwidth_letters_are_the_plain_letters() {
        same("\u{ff21}\u{ff4c}\u{ff49}\u{ff43}\u{ff45}", "alice");
        assert_eq!(prepare_exact("\u{ff21}lice").unwrap(), "Alice");
        // A fullwidth `@` and full stop too: the same e-mail address.
        same("bob\u{ff20}example\u{ff0e}com", "bob@example.com");
    }

    #[test]
    fn greek_sigmas_are_one_letter() {
        same(
            "\u{39f}\u{394}\u{3a5}\u{3a3}\u{3a3}\u{395}\u{3a5}\u{3a3}",
            "οδυσσευς",
        );
        same("οδυσσευς", "οδυσσευσ");
        same("\u{3a3}", "\u{3c2}");
        same("\u{3c3}", "\u{3c2}");
        assert_eq!(prepare_ci("ΟΔΥΣΣΕΥΣ").unwrap(), "οδυσσευσ");
    }

    #[test]
    fn case_is_folded_only_for_ci() {
        same("Alice@Example.COM", "alice@example.com");
        assert_eq!(prepare_exact("Alice").unwrap(), "Alice");
        assert_ne!(prepare_exact("Alice"), prepare_exact("alice"));
    }

    #[test]
    fn emails_with_common_punctuation_stay_valid() {
        for email in [
            "first.last+tag@example.com",
            "first_last-1@sub.example.co.uk",
            "o'brien@example.ie",
            "user%host@example.com",
            "\"quoted\"@example.com",
            "x@[192.0.2.1]",
            "~user!#$&*=?^`{|}@example.com",
        ] {
            assert_eq!(prepare_ci(email).unwrap(), email, "{email}");
            assert_eq!(prepare_exact(email).unwrap(), email, "{email}");
        }
        assert_eq!(
            prepare_ci("First.Last+Tag@Example.com").unwrap(),
            "first.last+tag@example.com"
        );
    }

    #[test]
    fn non_latin_identities_are_allowed() {
        assert_eq!(prepare_ci("Ëlodie").unwrap(), "ëlodie");
        assert_eq!(prepare_ci("Иван").unwrap(), "иван");
        assert_eq!(prepare_ci("山田").unwrap(), "山田");
        assert_eq!(prepare_ci("שלום").unwrap(), "שלום");
    }

    #[test]
    fn empty_and_all_ignorable_values_are_refused() {
        assert_eq!(prepare_ci(""), Err(PrepareError::Empty));
        assert_eq!(prepare_ci("   \t\n"), Err(PrepareError::Empty));
        assert_eq!(prepare_exact(""), Err(PrepareError::Empty));
        assert_eq!(prepare_exact("\u{3000}"), Err(PrepareError::Empty));
        for ignorable in ["\u{200b}\u{200b}", "\u{ad}", "\u{feff}", "\u{2060}\u{200c}"] {
            assert!(prepare_ci(ignorable).is_err(), "{ignorable:?}");
            assert!(prepare_exact(ignorable).is_err(), "{ignorable:?}");
        }
    }

    #[test]
    fn other_disallowed_kinds_are_named() {
        assert_eq!(
            refused("a\u{7}b"),
            PrepareError::Disallowed(CharKind::Control)
        );
        assert_eq!(
            refused("smile\u{1f600}"),
            PrepareError::Disallowed(CharKind::Symbol)
        );
        assert_eq!(
            refused("x\u{e000}"),
            PrepareError::Disallowed(CharKind::PrivateUse)
        );
        assert_eq!(
            refused("x\u{2460}"),
            PrepareError::Disallowed(CharKind::Compatibility)
        );
        assert_eq!(
            refused("a\u{ab}b\u{bb}"),
            PrepareError::Disallowed(CharKind::Punctuation)
        );
        assert_eq!(
            refused("x\u{378}"),
            PrepareError::Disallowed(CharKind::Unassigned)
        );
        // Hebrew followed by Latin and digits in one label breaks the bidi rule.
        assert_eq!(refused("\u{5e9}a1"), PrepareError::Bidi);
    }

    #[test]
    fn messages_do_not_echo_the_value() {
        for value in [
            "secret\u{200b}name",
            "secret name",
            "secret\u{1f600}",
            "\u{5e9}secret",
        ] {
            let message = refused(value).to_string();
            assert!(!message.contains("secret"), "{message}");
            assert!(!message.is_empty());
        }
    }

    #[test]
    fn preparing_twice_changes_nothing() {
        let samples = [
            "Alice",
            " Stra\u{df}e ",
            "cafe\u{301}",
            "ΟΔΥΣΣΕΥΣ",
            "\u{ff21}lice",
            "first.last+tag@example.com",
            "\u{130}stanbul",
            "\u{1f0}",
            "\u{149}",
            "\u{13a0}\u{ab70}",
            "K\u{212a}",
            "Ǆemal",
            "ǅemal",
            "ﬁ",
            "\u{1e9e}",
            "ΐ",
        ];
        for sample in samples {
            for prepare in [prepare_ci, prepare_exact] {
                if let Ok(once) = prepare(sample) {
                    assert_eq!(prepare(&once).unwrap(), once, "{sample:?}");
                }
            }
        }
    }

    #[test]
    fn characters_newer_than_the_precis_tables_are_refused() {
        // The IANA PRECIS tables (and so `precis-core`) stop at Unicode 6.3: later code
        // points, such as Cherokee small letters (8.0) and Georgian Mtavruli (11.0), are
        // refused as unassigned, so their case mappings cannot make two accounts either.
        assert_eq!(
            refused("\u{ab70}"),
            PrepareError::Disallowed(CharKind::Unassigned)
        );
        assert_eq!(
            refused("\u{1c90}"),
            PrepareError::Disallowed(CharKind::Unassigned)
        );
        // Cherokee capitals (3.0) fold to themselves; old Georgian capitals fold to small.
        assert_eq!(prepare_ci("\u{13a0}").unwrap(), "\u{13a0}");
        same("\u{10a0}", "\u{2d00}");
    }

    #[test]
    fn dotless_and_dotted_i_stay_distinct_letters() {
        // They look different, so they may be different accounts; no Turkish tailoring.
        assert_eq!(prepare_ci("I").unwrap(), "i");
        assert_eq!(prepare_ci("\u{131}").unwrap(), "\u{131}");
        assert_eq!(prepare_ci("\u{130}").unwrap(), "i\u{307}");
    }
}
