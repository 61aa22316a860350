//! What a target configured, as a vendor module reads it to build itself:
//! plain settings, and credentials resolved only when a module asks for them
//! (so a secret a kind does not use is never read). Configuration implements
//! `TargetSettings`; vendor modules never see configuration files or the
//! environment.

use secrecy::SecretString;

/// What a target configured, as a vendor module's builder reads it.
pub trait TargetSettings {
    /// The vendor's base URL, or a simulator's.
    fn endpoint(&self) -> &str;
    fn app_id(&self) -> Option<u64>;
    fn user_store_id(&self) -> Option<&str>;
    fn region(&self) -> Option<&str>;
    /// A credential that is not secret on its own (a SecretId), resolved to text.
    fn identifier(&self, key: &'static str) -> Result<String, SettingError>;
    /// A secret credential, resolved.
    fn secret(&self, key: &'static str) -> Result<SecretString, SettingError>;
}

/// Why a target's settings could not build its vendor module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingError {
    #[error("{key} is required")]
    Missing { key: &'static str },
    #[error("{key} {reason}")]
    Invalid { key: &'static str, reason: String },
}

impl SettingError {
    /// The configuration key at fault, e.g. `app_id`.
    pub fn key(&self) -> &'static str {
        match self {
            SettingError::Missing { key } | SettingError::Invalid { key, .. } => key,
        }
    }
}

/// A required plain setting, or the error naming it.
pub fn required<T>(value: Option<T>, key: &'static str) -> Result<T, SettingError> {
    value.ok_or(SettingError::Missing { key })
}
