//! Topic names, checked once where they come in.
//!
//! A name reaches Kappa from a query body, an ingest URL, a view name or a directory of the
//! embedded log, and becomes a Kafka topic and a directory. [`Topic::new`] is the one check of
//! those rules; code that holds a [`Topic`] needs none.

use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Serialize};

/// Most bytes in a topic name (Kafka's limit).
pub const MAX_TOPIC_LEN: usize = 249;

/// A name that is not a valid topic name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid topic name [{0}]: use 1 to 249 of [A-Za-z0-9._-], not . or ..")]
pub struct InvalidTopic(pub String);

/// A topic name as Kafka allows it: `[A-Za-z0-9._-]{1,249}`, not `.` or `..` (safe as a
/// directory name too). View names follow the same rules.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Topic(String);

impl Topic {
    /// Check `name` against the rules.
    pub fn new(name: impl Into<String>) -> Result<Topic, InvalidTopic> {
        let name = name.into();
        let valid = !name.is_empty()
            && name.len() <= MAX_TOPIC_LEN
            && name != "."
            && name != ".."
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if valid { Ok(Topic(name)) } else { Err(InvalidTopic(name)) }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Topic {
    type Error = InvalidTopic;

    fn try_from(name: String) -> Result<Topic, InvalidTopic> {
        Topic::new(name)
    }
}

impl TryFrom<&str> for Topic {
    type Error = InvalidTopic;

    fn try_from(name: &str) -> Result<Topic, InvalidTopic> {
        Topic::new(name)
    }
}

impl From<Topic> for String {
    fn from(topic: Topic) -> String {
        topic.0
    }
}

impl Deref for Topic {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Topic {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_names_are_topics_and_nothing_else_is() {
        for good in ["t", "tweets", "a.b_c-D9", &"x".repeat(MAX_TOPIC_LEN), "..."] {
            assert_eq!(Topic::new(good).map(String::from), Ok(good.to_string()));
        }
        for bad in ["", ".", "..", "a/b", "a b", "é", &"x".repeat(MAX_TOPIC_LEN + 1)] {
            assert_eq!(Topic::new(bad), Err(InvalidTopic(bad.to_string())));
        }
    }

    #[test]
    fn a_topic_deserialises_only_from_a_valid_name() {
        let t: Topic = serde_json::from_str(r#""tweets""#).expect("valid");
        assert_eq!(serde_json::to_string(&t).expect("serialises"), r#""tweets""#);
        assert!(serde_json::from_str::<Topic>(r#""a/b""#).is_err());
    }
}
