//! Who an upstream call is for, as far as an upstream needs to know: the
//! bundled engine keeps each tenant's prefix cache apart and each client key
//! to its share of the batch.

/// The client behind a call; empty when no keys are configured.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Caller {
    /// The virtual key's name.
    pub key: Option<String>,
    /// The key's tenant: the scope of everything cached for it.
    pub tenant: Option<String>,
}
