//! One file per API family. Each handler decodes its request, does the work
//! through the broker's state, and encodes its response.

pub mod api_versions;
pub mod cluster;
pub mod configs;
pub mod coordinator;
pub mod delete_records;
pub mod fetch;
pub mod groups;
pub mod list_offsets;
pub mod log_dirs;
pub mod metadata;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod producer_id;
pub mod redirect;
pub mod topics;
