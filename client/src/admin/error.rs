//! The admin client's error: one enum for the whole call and for each item
//! of a call (a topic, a partition, a config resource), so that a caller
//! matches on the same variants whichever call it made. Every error that came
//! from a broker carries the Kafka error code, never only a string.

use std::time::Duration;

use protocol::ErrorCode;
use thiserror::Error;

use crate::admin::types::ConfigResource;
use crate::cluster::ClusterError;
use crate::connection::ConnectionError;

/// Why an admin call, or one item of it, failed.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum AdminError {
    /// A setting of [`crate::admin::AdminConfig`] cannot work.
    #[error("invalid {setting}: {reason}")]
    Config {
        /// The setting, by its Java property name.
        setting: &'static str,
        /// What went wrong, in words.
        reason: String,
    },
    /// No broker could be reached (at connect, or for a metadata refresh).
    #[error("cannot reach the cluster: {0}")]
    Cluster(#[from] ClusterError),
    /// The request could not be sent or its response not read.
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    /// The call did not finish within its timeout; `last_error` is what the
    /// last attempt failed with, if an attempt had finished.
    #[error("{operation} did not finish within {timeout:?}{}", last_error.as_ref().map(|e| format!("; last error: {e}")).unwrap_or_default())]
    Timeout {
        /// The request, by Kafka's name (e.g. `CreateTopics`).
        operation: &'static str,
        /// The call's timeout.
        timeout: Duration,
        /// What the last attempt failed with, if one finished.
        last_error: Option<Box<AdminError>>,
    },
    /// The broker refused the whole request (its top-level error code).
    #[error("{operation} failed with {code}{}", message_suffix(message))]
    Rejected {
        /// The request, by Kafka's name (e.g. `CreateTopics`).
        operation: &'static str,
        /// The Kafka error code the broker answered with.
        code: ErrorCode,
        /// The broker's error message, if it sent one.
        message: Option<String>,
    },
    /// The broker refused the request for one topic.
    #[error("topic {topic:?}: {code}{}", message_suffix(message))]
    Topic {
        /// The topic.
        topic: String,
        /// The Kafka error code the broker answered with.
        code: ErrorCode,
        /// The broker's error message, if it sent one.
        message: Option<String>,
    },
    /// The broker refused the request for one partition.
    #[error("partition {topic}-{partition}: {code}{}", message_suffix(message))]
    Partition {
        /// The topic.
        topic: String,
        /// The partition's index.
        partition: i32,
        /// The Kafka error code the broker answered with.
        code: ErrorCode,
        /// The broker's error message, if it sent one.
        message: Option<String>,
    },
    /// The broker refused to describe one config resource.
    #[error("{resource}: {code}{}", message_suffix(message))]
    Resource {
        /// The config resource.
        resource: ConfigResource,
        /// The Kafka error code the broker answered with.
        code: ErrorCode,
        /// The broker's error message, if it sent one.
        message: Option<String>,
    },
    /// A group's coordinator refused the request for that group (e.g.
    /// `GROUP_ID_NOT_FOUND`, `NON_EMPTY_GROUP`, `COORDINATOR_NOT_AVAILABLE`).
    #[error("group {group:?}: {code}{}", message_suffix(message))]
    Group {
        /// The group id.
        group: String,
        /// The Kafka error code the broker answered with.
        code: ErrorCode,
        /// The broker's error message, if it sent one.
        message: Option<String>,
    },
    /// The brokers do not serve what the call needs (for example an unclean
    /// election from a broker that only speaks ElectLeaders v0).
    #[error("{operation} is not supported: {reason}")]
    Unsupported {
        /// The request, by Kafka's name (e.g. `CreateTopics`).
        operation: &'static str,
        /// Why the brokers cannot serve it.
        reason: String,
    },
    /// The broker's answer left out an item that was asked for.
    #[error("{operation}: the response has no result for {item}")]
    MissingResult {
        /// The request, by Kafka's name (e.g. `CreateTopics`).
        operation: &'static str,
        /// The item left out (a topic, a partition, a resource).
        item: String,
    },
}

fn message_suffix(message: &Option<String>) -> String {
    match message {
        Some(m) if !m.is_empty() => format!(": {m}"),
        _ => String::new(),
    }
}

impl AdminError {
    /// The Kafka error code the broker answered with, if the error came
    /// from a broker's answer (for a timeout, the last attempt's code).
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            AdminError::Rejected { code, .. }
            | AdminError::Topic { code, .. }
            | AdminError::Partition { code, .. }
            | AdminError::Resource { code, .. }
            | AdminError::Group { code, .. } => Some(*code),
            AdminError::Timeout { last_error, .. } => last_error.as_ref().and_then(|e| e.code()),
            _ => None,
        }
    }

    /// Whether the same call may succeed if made again: network trouble, and
    /// error codes Kafka marks retriable (`NOT_CONTROLLER`,
    /// `LEADER_NOT_AVAILABLE`, ...).
    pub fn is_retriable(&self) -> bool {
        match self {
            AdminError::Cluster(e) => e.is_retriable(),
            AdminError::Connection(e) => e.is_retriable(),
            AdminError::Timeout { .. } => true,
            AdminError::Rejected { code, .. }
            | AdminError::Topic { code, .. }
            | AdminError::Partition { code, .. }
            | AdminError::Resource { code, .. }
            | AdminError::Group { code, .. } => code.is_retriable(),
            AdminError::Config { .. }
            | AdminError::Unsupported { .. }
            | AdminError::MissingResult { .. } => false,
        }
    }
}

/// The error for an item's code, or `Ok` for `NONE`.
pub(crate) fn check(
    code: i16,
    error: impl FnOnce(ErrorCode) -> AdminError,
) -> Result<(), AdminError> {
    if code == 0 {
        Ok(())
    } else {
        Err(error(ErrorCode(code)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_kept_and_retriability_follows_kafka() {
        // A topic error keeps its code; NOT_CONTROLLER is retriable, TOPIC_ALREADY_EXISTS is not.
        let exists = AdminError::Topic {
            topic: "t".into(),
            code: ErrorCode::TOPIC_ALREADY_EXISTS,
            message: Some("Topic 't' already exists.".into()),
        };
        assert_eq!(exists.code(), Some(ErrorCode::TOPIC_ALREADY_EXISTS));
        assert!(!exists.is_retriable());
        assert!(
            exists.to_string().contains("TopicAlreadyExists"),
            "{exists}"
        );
        let moved = AdminError::Rejected {
            operation: "CreateTopics",
            code: ErrorCode(41),
            message: None,
        };
        assert!(moved.is_retriable());
        let timeout = AdminError::Timeout {
            operation: "CreateTopics",
            timeout: Duration::from_secs(1),
            last_error: Some(Box::new(moved)),
        };
        assert_eq!(timeout.code(), Some(ErrorCode(41)));
    }
}
