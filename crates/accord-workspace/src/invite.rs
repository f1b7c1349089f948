//! Invitations: one line that carries everything a new member needs to
//! fetch a partnership (its id, where to find it, and whom to trust).

use accord_identity::OrgKey;
use accord_model::PartnershipId;
use serde::{Deserialize, Serialize};

use crate::settings::{PeerConfig, normalise_url};
use crate::{Workspace, WorkspaceError};

const PREFIX: &str = "accord-invite:";

/// What an invite code says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invite {
    pub partnership: PartnershipId,
    pub name: String,
    /// The organisation invited (only it can use the invite: membership is in the roster).
    pub member: OrgKey,
    /// Who invited: a peer the new member may trust for this partnership.
    pub inviter: OrgKey,
    /// Where to sync: a relay (with its pinned key) or the inviter's node.
    pub peer: Option<PeerConfig>,
}

impl Invite {
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        format!("{PREFIX}{}", data_encoding::BASE64URL_NOPAD.encode(&json))
    }

    pub fn decode(code: &str) -> Result<Self, WorkspaceError> {
        let bad = || WorkspaceError::BadInvite;
        let body = code.trim().strip_prefix(PREFIX).ok_or_else(bad)?;
        if body.len() > 4096 {
            return Err(bad());
        }
        let json = data_encoding::BASE64URL_NOPAD
            .decode(body.as_bytes())
            .map_err(|_| bad())?;
        serde_json::from_slice(&json).map_err(|_| bad())
    }
}

impl Workspace {
    /// An invite for a member already on the roster (add it first with `member add`).
    pub fn invite(
        &self,
        partnership: &str,
        member: &str,
        peer: Option<(&str, Option<OrgKey>)>,
    ) -> Result<Invite, WorkspaceError> {
        let roster = self.partnership(partnership)?;
        let member = roster.resolve_member(member)?.key;
        let peer = match peer {
            Some((url, key)) => Some(PeerConfig {
                url: normalise_url(url)?,
                key,
            }),
            None => None,
        };
        Ok(Invite {
            partnership: roster.id,
            name: roster.name.clone(),
            member,
            inviter: self.whoami().key,
            peer,
        })
    }

    /// Records an invite: the partnership is wanted, and its peer is added.
    pub fn join(&self, invite: &Invite) -> Result<(), WorkspaceError> {
        let me = self.whoami().key;
        if invite.member != me {
            return Err(WorkspaceError::InviteForSomeoneElse {
                fingerprint: invite.member.fingerprint().to_string(),
            });
        }
        if let Some(peer) = &invite.peer {
            self.add_peer(&peer.url, peer.key)?;
        }
        self.remember_joined(invite.partnership)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invites_round_trip_and_garbage_is_refused() {
        let key = accord_identity::OrgSecret::from_seed([1; 32]).public();
        let invite = Invite {
            partnership: PartnershipId::from_bytes([2; 16]),
            name: "Sharing Our Strengths".into(),
            member: key,
            inviter: key,
            peer: Some(PeerConfig {
                url: "ws://127.0.0.1:7400/sync".into(),
                key: Some(key),
            }),
        };
        let code = invite.encode();
        assert!(!code.contains(char::is_whitespace));
        assert_eq!(Invite::decode(&code).unwrap(), invite);
        assert!(Invite::decode("accord-invite:!!!").is_err());
        assert!(Invite::decode("hello").is_err());
        assert!(Invite::decode(&code[..code.len() - 5]).is_err());
    }
}
