//! What a replica remembers besides documents: the peers and relays it
//! syncs with, and the partnerships it has joined but not yet received.

use accord_identity::OrgKey;
use accord_model::PartnershipId;
use accord_store::WriteBatch;
use serde::{Deserialize, Serialize};

use crate::{Workspace, WorkspaceError};

pub(crate) const PEERS: &str = "peers";
pub(crate) const JOINED: &str = "joined";

/// A peer or relay this replica syncs with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerConfig {
    /// A websocket URL, e.g. `ws://relay.example.org:7400/sync`.
    pub url: String,
    /// The organisation key the peer must prove; learned on first contact
    /// if not given (and then pinned), or given by an invite.
    pub key: Option<OrgKey>,
}

impl Workspace {
    pub fn peers(&self) -> Result<Vec<PeerConfig>, WorkspaceError> {
        self.read_setting(PEERS)
    }

    /// Adds a peer, or updates its pinned key. Returns whether it was new.
    pub fn add_peer(&self, url: &str, key: Option<OrgKey>) -> Result<bool, WorkspaceError> {
        let url = normalise_url(url)?;
        let mut peers = self.peers()?;
        let added = match peers.iter_mut().find(|p| p.url == url) {
            Some(existing) => {
                existing.key = key.or(existing.key);
                false
            }
            None => {
                peers.push(PeerConfig { url, key });
                true
            }
        };
        self.write_setting(PEERS, &peers)?;
        Ok(added)
    }

    /// Remembers the key a peer proved on first contact (trust on first use).
    pub fn pin_peer(&self, url: &str, key: OrgKey) -> Result<(), WorkspaceError> {
        let mut peers = self.peers()?;
        if let Some(peer) = peers.iter_mut().find(|p| p.url == url && p.key.is_none()) {
            peer.key = Some(key);
            self.write_setting(PEERS, &peers)?;
        }
        Ok(())
    }

    pub fn remove_peer(&self, url: &str) -> Result<bool, WorkspaceError> {
        let mut peers = self.peers()?;
        let before = peers.len();
        peers.retain(|p| p.url != url.trim());
        self.write_setting(PEERS, &peers)?;
        Ok(peers.len() != before)
    }

    /// Partnerships joined by invite whose roster has not arrived yet.
    pub fn joined_pending(&self) -> Result<Vec<PartnershipId>, WorkspaceError> {
        let joined: Vec<PartnershipId> = self.read_setting(JOINED)?;
        let held: Vec<PartnershipId> = self.partnerships()?.into_iter().map(|r| r.id).collect();
        Ok(joined.into_iter().filter(|p| !held.contains(p)).collect())
    }

    pub(crate) fn remember_joined(&self, partnership: PartnershipId) -> Result<(), WorkspaceError> {
        let mut joined: Vec<PartnershipId> = self.read_setting(JOINED)?;
        if !joined.contains(&partnership) {
            joined.push(partnership);
        }
        self.write_setting(JOINED, &joined)
    }

    fn read_setting<T: for<'de> Deserialize<'de> + Default>(
        &self,
        key: &str,
    ) -> Result<T, WorkspaceError> {
        match self.replica().get_setting(key)? {
            None => Ok(T::default()),
            Some(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| WorkspaceError::DamagedDocument {
                    id: format!("setting {key}"),
                    detail: e.to_string(),
                })
            }
        }
    }

    fn write_setting<T: Serialize>(&self, key: &str, value: &T) -> Result<(), WorkspaceError> {
        let mut batch = WriteBatch::default();
        batch.put_setting(key, serde_json::to_vec(value).unwrap_or_default());
        Ok(self.replica().commit(batch)?)
    }
}

/// Accepts `ws://` and `wss://` URLs; a bare `host:port` means `ws://host:port/sync`.
pub fn normalise_url(url: &str) -> Result<String, WorkspaceError> {
    let url = url.trim();
    let with_scheme = if url.contains("://") {
        url.to_owned()
    } else {
        format!("ws://{url}")
    };
    let Some(rest) = with_scheme
        .strip_prefix("ws://")
        .or_else(|| with_scheme.strip_prefix("wss://"))
    else {
        return Err(WorkspaceError::BadUrl(url.to_owned()));
    };
    if rest.is_empty() || rest.starts_with('/') {
        return Err(WorkspaceError::BadUrl(url.to_owned()));
    }
    if rest.contains('/') {
        Ok(with_scheme)
    } else {
        Ok(format!("{with_scheme}/sync"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_normalised() {
        assert_eq!(
            normalise_url("127.0.0.1:7400").unwrap(),
            "ws://127.0.0.1:7400/sync"
        );
        assert_eq!(
            normalise_url("wss://relay.example.org/sync").unwrap(),
            "wss://relay.example.org/sync"
        );
        assert!(normalise_url("http://x").is_err());
        assert!(normalise_url("ws://").is_err());
    }
}
