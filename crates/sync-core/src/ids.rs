//! Validated names: entity names, record ids and operation ids.
//!
//! Entity names and record ids travel into SQLite keys, URLs and logs, so
//! they are checked once, at the edge, and carried as newtypes afterwards.

use std::fmt;
use std::str::FromStr;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::ValidationError;

/// 16 bytes from a cryptographically secure generator: the thread's
/// ChaCha12 stream (`rand::rng()`), seeded from the operating system and
/// reseeded every 64 KiB of output. Ids are idempotency keys and attempt
/// ids, so no observed id may tell anything about another one; the stream
/// costs tens of nanoseconds per id and no system call.
fn random_bytes() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

/// The longest entity name or record id accepted, in UTF-8 bytes.
pub const MAX_NAME_BYTES: usize = 256;

/// Checks the rules shared by [`EntityName`] and [`RecordId`].
fn validate_name(what: &'static str, value: &str) -> Result<(), ValidationError> {
    if value.is_empty() {
        return Err(ValidationError::Empty { what });
    }
    if value.len() > MAX_NAME_BYTES {
        return Err(ValidationError::TooLong {
            what,
            len: value.len(),
            max: MAX_NAME_BYTES,
        });
    }
    if let Some((position, c)) = value.char_indices().find(|(_, c)| c.is_control()) {
        return Err(ValidationError::ControlCharacter {
            what,
            position,
            code: u32::from(c),
        });
    }
    Ok(())
}

macro_rules! validated_name {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates `value` and wraps it.
            ///
            /// # Errors
            /// [`ValidationError`] when the value is empty, longer than
            #[doc = concat!("[`MAX_NAME_BYTES`] bytes, or contains a control character (NUL included).")]
            pub fn new(value: impl Into<String>) -> Result<Self, ValidationError> {
                let value = value.into();
                validate_name($what, &value)?;
                Ok(Self(value))
            }

            /// The name as a string slice.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Gives back the owned string.
            #[must_use]
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = ValidationError;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::new(value)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = ValidationError;
            fn try_from(value: &str) -> Result<Self, Self::Error> {
                Self::new(value)
            }
        }

        impl FromStr for $name {
            type Err = ValidationError;
            fn from_str(value: &str) -> Result<Self, Self::Err> {
                Self::new(value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> Self {
                value.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }
    };
}

validated_name!(
    /// The name of a collection of records, such as `tasks` or `customers`.
    ///
    /// Rules: 1 to [`MAX_NAME_BYTES`] bytes of UTF-8, no control characters
    /// (this includes NUL, DEL and the C1 range). Anything else is allowed:
    /// the HTTP adapter percent-encodes names, so `/` or `?` cannot escape
    /// their path segment.
    EntityName,
    "entity name"
);

validated_name!(
    /// The id of one record inside an entity, chosen by the app.
    ///
    /// Same rules as [`EntityName`]: 1 to [`MAX_NAME_BYTES`] bytes of UTF-8
    /// and no control characters. Numbers are ids too: `RecordId::from(42u64)`.
    RecordId,
    "record id"
);

/// The prefix of a temporary id ([`RecordId::temporary`]).
const TEMPORARY_PREFIX: &str = "tmp-";

impl RecordId {
    /// A fresh temporary id, for a record whose id the server assigns: the
    /// server's id replaces it when the create is applied, and the
    /// temporary one keeps resolving to it. It reads `tmp-` and 32
    /// lowercase hex digits (128 random bits), so it is recognisable
    /// everywhere ([`Self::is_temporary`]) and never sent to the server as
    /// an id.
    #[must_use]
    pub fn temporary() -> Self {
        let mut text = String::with_capacity(TEMPORARY_PREFIX.len() + 32);
        text.push_str(TEMPORARY_PREFIX);
        for byte in random_bytes() {
            text.push_str(&format!("{byte:02x}"));
        }
        Self(text)
    }

    /// Whether this is a temporary id made by [`Self::temporary`]: `tmp-`
    /// and exactly 32 lowercase hex digits.
    #[must_use]
    pub fn is_temporary(&self) -> bool {
        Self::is_temporary_text(&self.0)
    }

    /// Whether `text` is a temporary id ([`Self::is_temporary`]), without
    /// making a `RecordId` of it: cheap enough for every string of every
    /// document saved.
    #[must_use]
    pub fn is_temporary_text(text: &str) -> bool {
        text.len() == TEMPORARY_PREFIX.len() + 32
            && text.strip_prefix(TEMPORARY_PREFIX).is_some_and(|hex| {
                hex.bytes()
                    .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
            })
    }
}

impl From<u64> for RecordId {
    fn from(value: u64) -> Self {
        // A decimal number is never empty, never long and has no control
        // characters, so it needs no validation.
        Self(value.to_string())
    }
}

/// The identity of one local change, sent as the `Idempotency-Key` header.
///
/// A new id is generated for every local change; retries of the same change
/// reuse it, so a server that honours the header applies each change once.
/// Ids are random UUID v4 strings when generated here (122 bits from a
/// cryptographically secure generator, so one key seen on the wire does not
/// predict another); ids read back from a store may be any 1 to 128 visible
/// ASCII characters.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OperationId(String);

impl OperationId {
    /// The longest accepted operation id, in bytes.
    pub const MAX_BYTES: usize = 128;

    /// A fresh random id (UUID v4, from a cryptographically secure
    /// generator).
    #[must_use]
    pub fn generate() -> Self {
        Self(
            uuid::Builder::from_random_bytes(random_bytes())
                .into_uuid()
                .to_string(),
        )
    }

    /// Validates an id read from storage or supplied by the app.
    ///
    /// # Errors
    /// [`ValidationError::InvalidOperationId`] unless `value` is 1 to
    /// [`Self::MAX_BYTES`] visible ASCII characters (it becomes an HTTP header value).
    pub fn new(value: impl Into<String>) -> Result<Self, ValidationError> {
        let value = value.into();
        let valid = !value.is_empty()
            && value.len() <= Self::MAX_BYTES
            && value.bytes().all(|b| b.is_ascii_graphic());
        if valid {
            Ok(Self(value))
        } else {
            Err(ValidationError::InvalidOperationId)
        }
    }

    /// The id as a string slice.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for OperationId {
    type Error = ValidationError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<OperationId> for String {
    fn from(value: OperationId) -> Self {
        value.0
    }
}

impl fmt::Display for OperationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for OperationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// The identity of one attempt to send a queue item.
///
/// A fresh random id is taken at every claim. An outcome is applied only if
/// the item still carries the id of the attempt reporting it, so the late
/// outcome of an attempt given up on (after a restart) can never be mistaken
/// for the current one's.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AttemptId(u64);

impl AttemptId {
    /// A fresh random id (63 bits from a cryptographically secure
    /// generator); always below 2^63, so it fits SQLite's INTEGER.
    #[must_use]
    pub fn generate() -> Self {
        Self(rand::rng().next_u64() >> 1)
    }

    /// An id from its numeric value, as read back from storage.
    #[must_use]
    pub const fn from_u64(value: u64) -> Self {
        Self(value)
    }

    /// The numeric value.
    #[must_use]
    pub const fn as_u64(self) -> u64 {
        self.0
    }
}

/// The key of one record: its entity and its id.
///
/// Records of different entities never collide, even with equal ids.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct RecordKey {
    /// The collection the record belongs to.
    pub entity: EntityName,
    /// The record's id inside its collection.
    pub id: RecordId,
}

impl RecordKey {
    /// Pairs an entity and an id.
    #[must_use]
    pub fn new(entity: EntityName, id: RecordId) -> Self {
        Self { entity, id }
    }
}

impl fmt::Display for RecordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.entity, self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_ids_are_fresh_and_recognised() {
        let one = RecordId::temporary();
        let two = RecordId::temporary();
        assert_ne!(one, two);
        assert!(one.is_temporary() && two.is_temporary(), "{one}");
        assert_eq!(one.as_str().len(), 36);
        for not in [
            "tmp-",
            "tmp-0123456789abcdef0123456789abcdeF",
            "tmp-0123456789abcdef0123456789abcde",
            "tmp-0123456789abcdef0123456789abcdef0",
            "TMP-0123456789abcdef0123456789abcdef",
            "17",
            "tmp-0123456789abcdef0123456789abcdeg",
        ] {
            assert!(!RecordId::new(not).unwrap().is_temporary(), "{not}");
        }
        assert!(
            RecordId::new("tmp-0123456789abcdef0123456789abcdef")
                .unwrap()
                .is_temporary()
        );
    }

    #[test]
    fn accepts_ordinary_and_unicode_names() {
        for ok in ["tasks", "a", "Ünïcödé", "with space", "../x", "a/b?c#d%e"] {
            assert_eq!(EntityName::new(ok).unwrap().as_str(), ok);
            assert_eq!(RecordId::new(ok).unwrap().as_str(), ok);
        }
        let longest = "x".repeat(MAX_NAME_BYTES);
        assert!(RecordId::new(longest).is_ok());
    }

    #[test]
    fn rejects_empty() {
        assert_eq!(
            EntityName::new(""),
            Err(ValidationError::Empty { what: "entity name" })
        );
        assert_eq!(
            RecordId::new(""),
            Err(ValidationError::Empty { what: "record id" })
        );
    }

    #[test]
    fn rejects_over_long_counting_bytes_not_chars() {
        // 129 two-byte characters: 258 bytes.
        let long = "é".repeat(129);
        assert_eq!(
            RecordId::new(long),
            Err(ValidationError::TooLong {
                what: "record id",
                len: 258,
                max: MAX_NAME_BYTES
            })
        );
    }

    #[test]
    fn rejects_nul_and_control_characters_with_position() {
        for (input, position, code) in [
            ("a\0b", 1, 0),
            ("\nabc", 0, 10),
            ("ab\u{7f}", 2, 0x7f),
            ("é\u{85}", 2, 0x85),
        ] {
            assert_eq!(
                EntityName::new(input),
                Err(ValidationError::ControlCharacter {
                    what: "entity name",
                    position,
                    code
                }),
                "{input:?}"
            );
        }
    }

    #[test]
    fn serde_round_trip_validates() {
        let id = RecordId::new("42").unwrap();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"42\"");
        assert_eq!(serde_json::from_str::<RecordId>(&json).unwrap(), id);
        let err = serde_json::from_str::<EntityName>("\"\"").unwrap_err();
        assert!(err.to_string().contains("must not be empty"), "{err}");
    }

    #[test]
    fn numeric_ids_and_keys() {
        assert_eq!(RecordId::from(7u64).as_str(), "7");
        let key = RecordKey::new(EntityName::new("tasks").unwrap(), RecordId::from(7u64));
        assert_eq!(key.to_string(), "tasks/7");
    }

    #[test]
    fn attempt_ids_are_unique_and_fit_sqlite_integers() {
        let ids: std::collections::HashSet<AttemptId> = (0..100_000).map(|_| AttemptId::generate()).collect();
        assert_eq!(ids.len(), 100_000);
        assert!(ids.iter().all(|id| i64::try_from(id.as_u64()).is_ok()));
        // Below 2^63 but not squeezed further: the top bit left is used.
        assert!(ids.iter().any(|id| id.as_u64() >= 1 << 62));
        assert_eq!(AttemptId::from_u64(7).as_u64(), 7);
    }

    #[test]
    fn operation_ids_are_unique_v4_uuids_and_header_safe() {
        let a = OperationId::generate();
        let b = OperationId::generate();
        assert_ne!(a, b);
        let from_another_thread = std::thread::spawn(OperationId::generate).join().unwrap();
        assert_ne!(from_another_thread, a);
        let many: std::collections::HashSet<OperationId> =
            (0..100_000).map(|_| OperationId::generate()).collect();
        assert_eq!(many.len(), 100_000);
        for id in &many {
            let uuid = uuid::Uuid::parse_str(id.as_str()).unwrap();
            assert_eq!(uuid.get_version(), Some(uuid::Version::Random), "{id}");
            assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122, "{id}");
            assert_eq!(
                id.as_str(),
                uuid.hyphenated().to_string(),
                "lowercase, hyphenated"
            );
        }
        assert_eq!(OperationId::new(a.as_str()).unwrap(), a);
        for bad in ["", "has space", "tab\t", "ü"] {
            assert_eq!(OperationId::new(bad), Err(ValidationError::InvalidOperationId));
        }
        assert!(OperationId::new("k".repeat(129)).is_err());
    }

    /// SplitMix64, the generator ids once came from: its output step is a
    /// bijection that is easy to invert, so one output gives away the state
    /// and with it every later output.
    mod splitmix {
        pub(super) const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;
        const M1: u64 = 0xBF58_476D_1CE4_E5B9;
        const M2: u64 = 0x94D0_49BB_1331_11EB;

        /// The output for a state (the state already advanced by `GAMMA`).
        pub(super) fn mix(state: u64) -> u64 {
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(M1);
            z = (z ^ (z >> 27)).wrapping_mul(M2);
            z ^ (z >> 31)
        }

        /// The multiplicative inverse of an odd number modulo 2^64.
        fn inverse(odd: u64) -> u64 {
            let mut x = odd; // correct to 3 bits; each step doubles that
            for _ in 0..5 {
                x = x.wrapping_mul(2u64.wrapping_sub(odd.wrapping_mul(x)));
            }
            x
        }

        /// `x` from `x ^ (x >> shift)`.
        fn unshift(value: u64, shift: u32) -> u64 {
            let mut x = value;
            for _ in 0..64 / shift {
                x = value ^ (x >> shift);
            }
            x
        }

        /// The state behind an output.
        pub(super) fn unmix(output: u64) -> u64 {
            let z = unshift(output, 31).wrapping_mul(inverse(M2));
            let z = unshift(z, 27).wrapping_mul(inverse(M1));
            unshift(z, 30)
        }

        /// An operation id as the old generator built it from two outputs.
        pub(super) fn operation_id(first: u64, second: u64) -> String {
            let mut bytes = [0u8; 16];
            bytes[..8].copy_from_slice(&first.to_le_bytes());
            bytes[8..].copy_from_slice(&second.to_le_bytes());
            uuid::Builder::from_random_bytes(bytes).into_uuid().to_string()
        }

        /// The operation id the old generator gives after `id` on the same
        /// thread, computed from `id` alone; `None` when `id` cannot have
        /// come from it.
        pub(super) fn next_operation_id(id: &str) -> Option<String> {
            let bytes = *uuid::Uuid::parse_str(id).ok()?.as_bytes();
            let [first, second] = [&bytes[..8], &bytes[8..]].map(|half| {
                let mut word = [0u8; 8];
                word.copy_from_slice(half);
                u64::from_le_bytes(word)
            });
            // The version nibble overwrote bits 52..56 of the first output,
            // the variant bits 6..8 of the second: try the 16 first outputs
            // and keep the one whose successor matches the second.
            let variant = !(0b11u64 << 6);
            (0..16u64).find_map(|hidden| {
                let state = unmix((first & !(0xF << 52)) | (hidden << 52));
                let successor = mix(state.wrapping_add(GAMMA));
                (successor & variant == second & variant).then(|| {
                    operation_id(
                        mix(state.wrapping_add(GAMMA.wrapping_mul(2))),
                        mix(state.wrapping_add(GAMMA.wrapping_mul(3))),
                    )
                })
            })
        }

        /// The attempt ids the old generator may give after `id` on the same
        /// thread (an attempt id drops one bit of an output: two candidates).
        pub(super) fn next_attempt_ids(id: u64) -> [u64; 2] {
            [0, 1].map(|low| mix(unmix((id << 1) | low).wrapping_add(GAMMA.wrapping_mul(2))) >> 1)
        }
    }

    /// The attack the generator must resist, shown on a SplitMix64 stream:
    /// one observed id predicts the next.
    #[test]
    fn one_splitmix_id_predicts_the_next() {
        let mut state = 0x0123_4567_89AB_CDEF_u64;
        let mut output = || {
            state = state.wrapping_add(splitmix::GAMMA);
            splitmix::mix(state)
        };
        let seen = splitmix::operation_id(output(), output());
        let next = splitmix::operation_id(output(), output());
        assert_eq!(splitmix::next_operation_id(&seen), Some(next));
        let seen_attempt = output() >> 1;
        let _discarded = output();
        let next_attempt = output() >> 1;
        assert!(splitmix::next_attempt_ids(seen_attempt).contains(&next_attempt));
        assert_eq!(splitmix::unmix(splitmix::mix(42)), 42);
    }

    /// Ids come from a cryptographically secure generator: an observed
    /// idempotency key or attempt id does not predict the next one.
    #[test]
    fn generated_ids_do_not_predict_the_next() {
        for _ in 0..100 {
            let seen = OperationId::generate();
            let next = OperationId::generate();
            assert_ne!(
                splitmix::next_operation_id(seen.as_str()).as_deref(),
                Some(next.as_str()),
                "operation id {next} was predicted from {seen}"
            );
            let seen = AttemptId::generate();
            let next = AttemptId::generate();
            assert!(
                !splitmix::next_attempt_ids(seen.as_u64()).contains(&next.as_u64()),
                "attempt id {next:?} was predicted from {seen:?}"
            );
        }
    }
}
