//! Configuration from Java-style property names (`bootstrap.servers`,
//! `linger.ms`, `group.id`, ...), as the Java client and librdkafka take
//! it: [`crate::ProducerConfig::set`], [`crate::ConsumerConfig::set`],
//! [`crate::AdminConfig::set`] and their `from_properties`. An unknown
//! name, or a value that does not parse, is a [`ConfigError`] naming the
//! property; the typed fields and these names set the same settings.

use std::time::Duration;

use crate::error::ConfigError;

/// The error for `value` of property `name`.
pub(crate) fn invalid(name: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::InvalidProperty {
        name: name.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

pub(crate) fn unknown(name: &str) -> ConfigError {
    ConfigError::UnknownProperty {
        name: name.to_string(),
    }
}

/// A count or size: a non-negative integer that fits `T`.
pub(crate) fn number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, ConfigError> {
    value
        .trim()
        .parse()
        .map_err(|_| invalid(name, value, "not a non-negative integer in range"))
}

/// A `*.ms` property: whole milliseconds, not negative.
pub(crate) fn millis(name: &str, value: &str) -> Result<Duration, ConfigError> {
    number::<u64>(name, value).map(Duration::from_millis)
}

/// `true` or `false`, as the Java client takes them (any case).
pub(crate) fn boolean(name: &str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(name, value, "not true or false")),
    }
}

/// Builds a config from `(name, value)` pairs: `new` gets
/// `bootstrap.servers`, `set` the rest, in order.
pub(crate) fn build<C, K: AsRef<str>, V: AsRef<str>>(
    properties: impl IntoIterator<Item = (K, V)>,
    new: impl FnOnce(&str) -> C,
    mut set: impl FnMut(&mut C, &str, &str) -> Result<(), ConfigError>,
) -> Result<C, ConfigError> {
    let properties: Vec<(K, V)> = properties.into_iter().collect();
    let bootstrap = properties
        .iter()
        .rev()
        .find(|(k, _)| k.as_ref() == "bootstrap.servers")
        .ok_or(ConfigError::MissingProperty {
            name: "bootstrap.servers",
        })?;
    let mut config = new(bootstrap.1.as_ref());
    for (name, value) in &properties {
        set(&mut config, name.as_ref(), value.as_ref())?;
    }
    Ok(config)
}
