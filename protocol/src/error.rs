//! Kafka error codes, with whether a client may retry each.
//!
//! The codes and their retriability come from the Kafka protocol definition
//! (through `kafka-protocol`); this newtype gives the ones the project uses
//! readable names and keeps `i16` codes from being mixed up with other integers.

use kafka_protocol::error::ResponseError;

/// A Kafka error code as it travels on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorCode(pub i16);

impl ErrorCode {
    pub const NONE: ErrorCode = ErrorCode(0);
    pub const UNKNOWN_SERVER_ERROR: ErrorCode = ErrorCode(-1);
    pub const OFFSET_OUT_OF_RANGE: ErrorCode = ErrorCode(1);
    pub const CORRUPT_MESSAGE: ErrorCode = ErrorCode(2);
    pub const UNKNOWN_TOPIC_OR_PARTITION: ErrorCode = ErrorCode(3);
    pub const INVALID_FETCH_SIZE: ErrorCode = ErrorCode(4);
    pub const LEADER_NOT_AVAILABLE: ErrorCode = ErrorCode(5);
    pub const NOT_LEADER_OR_FOLLOWER: ErrorCode = ErrorCode(6);
    pub const REQUEST_TIMED_OUT: ErrorCode = ErrorCode(7);
    pub const REPLICA_NOT_AVAILABLE: ErrorCode = ErrorCode(9);
    pub const MESSAGE_TOO_LARGE: ErrorCode = ErrorCode(10);
    pub const INVALID_TOPIC_EXCEPTION: ErrorCode = ErrorCode(17);
    pub const RECORD_LIST_TOO_LARGE: ErrorCode = ErrorCode(18);
    pub const NOT_ENOUGH_REPLICAS: ErrorCode = ErrorCode(19);
    pub const INVALID_REQUIRED_ACKS: ErrorCode = ErrorCode(21);
    pub const INVALID_TIMESTAMP: ErrorCode = ErrorCode(32);
    pub const UNSUPPORTED_VERSION: ErrorCode = ErrorCode(35);
    pub const TOPIC_ALREADY_EXISTS: ErrorCode = ErrorCode(36);
    pub const INVALID_PARTITIONS: ErrorCode = ErrorCode(37);
    pub const INVALID_REPLICATION_FACTOR: ErrorCode = ErrorCode(38);
    pub const INVALID_REQUEST: ErrorCode = ErrorCode(42);
    pub const INVALID_CONFIG: ErrorCode = ErrorCode(40);
    pub const POLICY_VIOLATION: ErrorCode = ErrorCode(44);
    pub const KAFKA_STORAGE_ERROR: ErrorCode = ErrorCode(56);
    pub const LOG_DIR_NOT_FOUND: ErrorCode = ErrorCode(57);
    pub const UNKNOWN_TOPIC_ID: ErrorCode = ErrorCode(100);
    pub const INCONSISTENT_TOPIC_ID: ErrorCode = ErrorCode(103);
    pub const INVALID_RECORD: ErrorCode = ErrorCode(87);
    pub const TOPIC_AUTHORIZATION_FAILED: ErrorCode = ErrorCode(29);
    pub const INVALID_PRODUCER_EPOCH: ErrorCode = ErrorCode(47);
    pub const OUT_OF_ORDER_SEQUENCE_NUMBER: ErrorCode = ErrorCode(45);
    pub const DUPLICATE_SEQUENCE_NUMBER: ErrorCode = ErrorCode(46);
    pub const UNKNOWN_PRODUCER_ID: ErrorCode = ErrorCode(59);
    pub const OFFSET_METADATA_TOO_LARGE: ErrorCode = ErrorCode(12);
    pub const COORDINATOR_LOAD_IN_PROGRESS: ErrorCode = ErrorCode(14);
    pub const COORDINATOR_NOT_AVAILABLE: ErrorCode = ErrorCode(15);
    pub const NOT_COORDINATOR: ErrorCode = ErrorCode(16);
    pub const ILLEGAL_GENERATION: ErrorCode = ErrorCode(22);
    pub const INCONSISTENT_GROUP_PROTOCOL: ErrorCode = ErrorCode(23);
    pub const INVALID_GROUP_ID: ErrorCode = ErrorCode(24);
    pub const UNKNOWN_MEMBER_ID: ErrorCode = ErrorCode(25);
    pub const INVALID_SESSION_TIMEOUT: ErrorCode = ErrorCode(26);
    pub const REBALANCE_IN_PROGRESS: ErrorCode = ErrorCode(27);
    pub const INVALID_COMMIT_OFFSET_SIZE: ErrorCode = ErrorCode(28);
    pub const NON_EMPTY_GROUP: ErrorCode = ErrorCode(68);
    pub const GROUP_ID_NOT_FOUND: ErrorCode = ErrorCode(69);
    pub const MEMBER_ID_REQUIRED: ErrorCode = ErrorCode(79);
    pub const GROUP_MAX_SIZE_REACHED: ErrorCode = ErrorCode(81);
    pub const FENCED_INSTANCE_ID: ErrorCode = ErrorCode(82);
    pub const GROUP_SUBSCRIBED_TO_TOPIC: ErrorCode = ErrorCode(86);
    pub const INVALID_REPLICA_ASSIGNMENT: ErrorCode = ErrorCode(39);
    pub const NOT_CONTROLLER: ErrorCode = ErrorCode(41);
    pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: ErrorCode = ErrorCode(53);
    pub const FENCED_LEADER_EPOCH: ErrorCode = ErrorCode(74);
    pub const UNKNOWN_LEADER_EPOCH: ErrorCode = ErrorCode(75);
    pub const STALE_BROKER_EPOCH: ErrorCode = ErrorCode(77);
    pub const ELECTION_NOT_NEEDED: ErrorCode = ErrorCode(84);
    pub const ELIGIBLE_LEADERS_NOT_AVAILABLE: ErrorCode = ErrorCode(83);
    pub const PREFERRED_LEADER_NOT_AVAILABLE: ErrorCode = ErrorCode(80);
    pub const DUPLICATE_BROKER_REGISTRATION: ErrorCode = ErrorCode(101);
    pub const BROKER_ID_NOT_REGISTERED: ErrorCode = ErrorCode(102);
    pub const INELIGIBLE_REPLICA: ErrorCode = ErrorCode(107);
    pub const NEW_LEADER_ELECTED: ErrorCode = ErrorCode(108);
    pub const OFFSET_NOT_AVAILABLE: ErrorCode = ErrorCode(78);
    pub const NOT_ENOUGH_REPLICAS_AFTER_APPEND: ErrorCode = ErrorCode(20);
    pub const INVALID_UPDATE_VERSION: ErrorCode = ErrorCode(95);
    pub const REASSIGNMENT_IN_PROGRESS: ErrorCode = ErrorCode(60);
    pub const NO_REASSIGNMENT_IN_PROGRESS: ErrorCode = ErrorCode(85);

    pub fn code(self) -> i16 {
        self.0
    }

    pub fn is_ok(self) -> bool {
        self.0 == 0
    }

    /// Whether a client may retry the request that got this error.
    pub fn is_retriable(self) -> bool {
        ResponseError::try_from_code(self.0).is_some_and(|e| e.is_retriable())
    }

    /// Kafka's name for the error, e.g. `CORRUPT_MESSAGE`, for logs.
    pub fn name(self) -> String {
        match ResponseError::try_from_code(self.0) {
            Some(e) => format!("{e:?}"),
            None if self.0 == 0 => "NONE".to_string(),
            None => format!("UNKNOWN({})", self.0),
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_code_is_kafkas() {
        // Each name in the table is the code Kafka's protocol definition gives that error.
        let table = [
            (ErrorCode::UNKNOWN_SERVER_ERROR, "UNKNOWN_SERVER_ERROR"),
            (ErrorCode::OFFSET_OUT_OF_RANGE, "OFFSET_OUT_OF_RANGE"),
            (ErrorCode::CORRUPT_MESSAGE, "CORRUPT_MESSAGE"),
            (
                ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                "UNKNOWN_TOPIC_OR_PARTITION",
            ),
            (ErrorCode::INVALID_FETCH_SIZE, "INVALID_FETCH_SIZE"),
            (ErrorCode::LEADER_NOT_AVAILABLE, "LEADER_NOT_AVAILABLE"),
            (ErrorCode::NOT_LEADER_OR_FOLLOWER, "NOT_LEADER_OR_FOLLOWER"),
            (ErrorCode::REQUEST_TIMED_OUT, "REQUEST_TIMED_OUT"),
            (ErrorCode::MESSAGE_TOO_LARGE, "MESSAGE_TOO_LARGE"),
            (
                ErrorCode::INVALID_TOPIC_EXCEPTION,
                "INVALID_TOPIC_EXCEPTION",
            ),
            (ErrorCode::RECORD_LIST_TOO_LARGE, "RECORD_LIST_TOO_LARGE"),
            (ErrorCode::NOT_ENOUGH_REPLICAS, "NOT_ENOUGH_REPLICAS"),
            (ErrorCode::INVALID_REQUIRED_ACKS, "INVALID_REQUIRED_ACKS"),
            (ErrorCode::INVALID_TIMESTAMP, "INVALID_TIMESTAMP"),
            (ErrorCode::UNSUPPORTED_VERSION, "UNSUPPORTED_VERSION"),
            (ErrorCode::TOPIC_ALREADY_EXISTS, "TOPIC_ALREADY_EXISTS"),
            (ErrorCode::INVALID_PARTITIONS, "INVALID_PARTITIONS"),
            (
                ErrorCode::INVALID_REPLICATION_FACTOR,
                "INVALID_REPLICATION_FACTOR",
            ),
            (ErrorCode::INVALID_REQUEST, "INVALID_REQUEST"),
            (ErrorCode::INVALID_CONFIG, "INVALID_CONFIG"),
            (ErrorCode::POLICY_VIOLATION, "POLICY_VIOLATION"),
            (ErrorCode::KAFKA_STORAGE_ERROR, "KAFKA_STORAGE_ERROR"),
            (ErrorCode::LOG_DIR_NOT_FOUND, "LOG_DIR_NOT_FOUND"),
            (ErrorCode::REPLICA_NOT_AVAILABLE, "REPLICA_NOT_AVAILABLE"),
            (ErrorCode::UNKNOWN_TOPIC_ID, "UNKNOWN_TOPIC_ID"),
            (ErrorCode::INCONSISTENT_TOPIC_ID, "INCONSISTENT_TOPIC_ID"),
            (ErrorCode::INVALID_RECORD, "INVALID_RECORD"),
            (
                ErrorCode::TOPIC_AUTHORIZATION_FAILED,
                "TOPIC_AUTHORIZATION_FAILED",
            ),
            (ErrorCode::INVALID_PRODUCER_EPOCH, "INVALID_PRODUCER_EPOCH"),
            (
                ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER,
                "OUT_OF_ORDER_SEQUENCE_NUMBER",
            ),
            (
                ErrorCode::DUPLICATE_SEQUENCE_NUMBER,
                "DUPLICATE_SEQUENCE_NUMBER",
            ),
            (ErrorCode::UNKNOWN_PRODUCER_ID, "UNKNOWN_PRODUCER_ID"),
            (
                ErrorCode::OFFSET_METADATA_TOO_LARGE,
                "OFFSET_METADATA_TOO_LARGE",
            ),
            (
                ErrorCode::COORDINATOR_LOAD_IN_PROGRESS,
                "COORDINATOR_LOAD_IN_PROGRESS",
            ),
            (
                ErrorCode::COORDINATOR_NOT_AVAILABLE,
                "COORDINATOR_NOT_AVAILABLE",
            ),
            (ErrorCode::NOT_COORDINATOR, "NOT_COORDINATOR"),
            (ErrorCode::ILLEGAL_GENERATION, "ILLEGAL_GENERATION"),
            (
                ErrorCode::INCONSISTENT_GROUP_PROTOCOL,
                "INCONSISTENT_GROUP_PROTOCOL",
            ),
            (ErrorCode::INVALID_GROUP_ID, "INVALID_GROUP_ID"),
            (ErrorCode::UNKNOWN_MEMBER_ID, "UNKNOWN_MEMBER_ID"),
            (
                ErrorCode::INVALID_SESSION_TIMEOUT,
                "INVALID_SESSION_TIMEOUT",
            ),
            (ErrorCode::REBALANCE_IN_PROGRESS, "REBALANCE_IN_PROGRESS"),
            (
                ErrorCode::INVALID_COMMIT_OFFSET_SIZE,
                "INVALID_COMMIT_OFFSET_SIZE",
            ),
            (ErrorCode::NON_EMPTY_GROUP, "NON_EMPTY_GROUP"),
            (ErrorCode::GROUP_ID_NOT_FOUND, "GROUP_ID_NOT_FOUND"),
            (ErrorCode::MEMBER_ID_REQUIRED, "MEMBER_ID_REQUIRED"),
            (ErrorCode::GROUP_MAX_SIZE_REACHED, "GROUP_MAX_SIZE_REACHED"),
            (ErrorCode::FENCED_INSTANCE_ID, "FENCED_INSTANCE_ID"),
            (
                ErrorCode::GROUP_SUBSCRIBED_TO_TOPIC,
                "GROUP_SUBSCRIBED_TO_TOPIC",
            ),
            (
                ErrorCode::INVALID_REPLICA_ASSIGNMENT,
                "INVALID_REPLICA_ASSIGNMENT",
            ),
            (ErrorCode::NOT_CONTROLLER, "NOT_CONTROLLER"),
            (
                ErrorCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
            ),
            (ErrorCode::FENCED_LEADER_EPOCH, "FENCED_LEADER_EPOCH"),
            (ErrorCode::UNKNOWN_LEADER_EPOCH, "UNKNOWN_LEADER_EPOCH"),
            (ErrorCode::STALE_BROKER_EPOCH, "STALE_BROKER_EPOCH"),
            (ErrorCode::ELECTION_NOT_NEEDED, "ELECTION_NOT_NEEDED"),
            (
                ErrorCode::ELIGIBLE_LEADERS_NOT_AVAILABLE,
                "ELIGIBLE_LEADERS_NOT_AVAILABLE",
            ),
            (
                ErrorCode::PREFERRED_LEADER_NOT_AVAILABLE,
                "PREFERRED_LEADER_NOT_AVAILABLE",
            ),
            (
                ErrorCode::DUPLICATE_BROKER_REGISTRATION,
                "DUPLICATE_BROKER_REGISTRATION",
            ),
            (
                ErrorCode::BROKER_ID_NOT_REGISTERED,
                "BROKER_ID_NOT_REGISTERED",
            ),
            (ErrorCode::INELIGIBLE_REPLICA, "INELIGIBLE_REPLICA"),
            (ErrorCode::NEW_LEADER_ELECTED, "NEW_LEADER_ELECTED"),
            (ErrorCode::OFFSET_NOT_AVAILABLE, "OFFSET_NOT_AVAILABLE"),
            (
                ErrorCode::NOT_ENOUGH_REPLICAS_AFTER_APPEND,
                "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
            ),
            (ErrorCode::INVALID_UPDATE_VERSION, "INVALID_UPDATE_VERSION"),
            (
                ErrorCode::REASSIGNMENT_IN_PROGRESS,
                "REASSIGNMENT_IN_PROGRESS",
            ),
            (
                ErrorCode::NO_REASSIGNMENT_IN_PROGRESS,
                "NO_REASSIGNMENT_IN_PROGRESS",
            ),
        ];
        for (code, name) in table {
            let kafka = ResponseError::try_from_code(code.0).expect(name);
            let kafka_name: String = format!("{kafka:?}")
                .chars()
                .flat_map(|c| {
                    let sep = c.is_ascii_uppercase().then_some('_');
                    sep.into_iter()
                        .chain(std::iter::once(c.to_ascii_uppercase()))
                })
                .skip(1)
                .collect();
            assert_eq!(kafka_name, name, "code {}", code.0);
        }
    }

    #[test]
    fn retriability_follows_the_kafka_definition() {
        // Leadership and timeouts are retriable; corruption and size errors are not.
        assert!(ErrorCode::NOT_LEADER_OR_FOLLOWER.is_retriable());
        assert!(ErrorCode::LEADER_NOT_AVAILABLE.is_retriable());
        assert!(ErrorCode::REQUEST_TIMED_OUT.is_retriable());
        assert!(ErrorCode::NOT_ENOUGH_REPLICAS.is_retriable());
        assert!(ErrorCode::CORRUPT_MESSAGE.is_retriable());
        assert!(!ErrorCode::MESSAGE_TOO_LARGE.is_retriable());
        assert!(!ErrorCode::UNSUPPORTED_VERSION.is_retriable());
        assert!(!ErrorCode::NONE.is_retriable());
    }
}
