//! LUKS2 tokens: JSON objects with a `type`, the `keyslots` they belong to, and any
//! other fields, which tell an unlocker where a keyslot's secret comes from. Vouch stores
//! its TPM2 seal description in one (type such as `vouch-tpm2`); the `luks2-` type prefix
//! is reserved for cryptsetup's built-in tokens.

use super::json::{Fields, Id, Metadata, TokenJson};

/// Largest token id cryptsetup accepts.
pub const MAX_TOKENS: u32 = 32;

/// Errors of the token API.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// The type is empty or uses the reserved `luks2-` prefix.
    #[error("token type {0:?} is empty or reserved (luks2- prefix)")]
    Kind(String),
    /// A field name collides with `type` or `keyslots`.
    #[error("token field {0:?} is reserved")]
    ReservedField(String),
    /// The token names a keyslot the volume does not have.
    #[error("token names keyslot {0}, which does not exist")]
    MissingKeyslot(u32),
    /// All token ids are in use.
    #[error("all {MAX_TOKENS} token ids are in use")]
    Full,
    /// No token has this id.
    #[error("no token {0}")]
    NotFound(u32),
}

/// A token to add to a volume.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    /// Token type, e.g. `vouch-tpm2`.
    pub kind: String,
    /// Keyslots it unlocks.
    pub keyslots: Vec<u32>,
    /// Other fields (the seal description), in order.
    pub fields: Fields,
}

impl Token {
    /// Reads a stored token.
    pub fn from_json(t: &TokenJson) -> Self {
        Token {
            kind: t.kind.clone(),
            keyslots: t.keyslots.iter().map(|k| k.0).collect(),
            fields: t.fields.clone(),
        }
    }

    fn to_json(&self) -> TokenJson {
        TokenJson {
            kind: self.kind.clone(),
            keyslots: self.keyslots.iter().map(|k| Id(*k)).collect(),
            fields: self.fields.clone(),
        }
    }
}

/// Adds `token` to `md` under the lowest free id and returns that id.
pub fn add(md: &mut Metadata, token: &Token) -> Result<u32, TokenError> {
    if token.kind.is_empty() || token.kind.starts_with("luks2-") {
        return Err(TokenError::Kind(token.kind.clone()));
    }
    if let Some(f) = ["type", "keyslots"]
        .iter()
        .find(|f| token.fields.contains_key(f))
    {
        return Err(TokenError::ReservedField((*f).to_string()));
    }
    if let Some(k) = token
        .keyslots
        .iter()
        .find(|k| !md.keyslots.contains_key(&Id(**k)))
    {
        return Err(TokenError::MissingKeyslot(*k));
    }
    let id = (0..MAX_TOKENS)
        .find(|i| !md.tokens.contains_key(&Id(*i)))
        .ok_or(TokenError::Full)?;
    md.tokens.insert(Id(id), token.to_json());
    Ok(id)
}

/// Removes token `id` from `md`.
pub fn remove(md: &mut Metadata, id: u32) -> Result<Token, TokenError> {
    md.tokens
        .remove(&Id(id))
        .map(|t| Token::from_json(&t))
        .ok_or(TokenError::NotFound(id))
}
