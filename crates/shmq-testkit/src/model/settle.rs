//! The model's side of an outcome on a live claim: an ack ends the message
//! and moves its key's last acked version (acks of one key come in
//! non-decreasing version order, G7); a nack on the last allowed delivery,
//! and a reject, send it to the dead letters (or to wait for room there);
//! another nack sends it back. Each ends the claim: its token is `LEASE_LOST`
//! from then on.

use super::state::{Model, Msg, St};

/// Where a failed delivery went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failed {
    /// Back in the queue (redelivery, or delayed).
    Back,
    /// Moved to the dead letters.
    DeadLettered,
    /// Waiting for room in the dead letters.
    WaitsForRoom,
}

impl Model {
    /// The token of the live claim of `id`.
    fn claim_token(&self, id: u64) -> Result<u64, String> {
        match self.msgs.get(&id).map(|m| &m.st) {
            Some(St::Claimed { token, .. }) => Ok(*token),
            other => Err(format!("model: {id} is not claimed: {other:?}")),
        }
    }

    /// The claim of `id` was acked: the message leaves the queue.
    pub fn acked(&mut self, id: u64) -> Result<Msg, String> {
        let token = self.claim_token(id)?;
        let m = &self.msgs[&id];
        let last = self.keys.last_acked(m.key);
        if m.key != 0 && m.version < last {
            return Err(format!(
                "acked version {} of key {} after version {last} (G7)",
                m.version, m.key
            ));
        }
        self.keys.acked(m.key, m.version);
        self.ended_tokens.push(token);
        Ok(self.remove(id))
    }

    /// The claim of `id` was nacked: dead-lettered on its last allowed
    /// delivery, else back in the state `back()` says (asked only then: a
    /// driver may read the file for it).
    pub fn nacked(
        &mut self,
        id: u64,
        back: impl FnOnce() -> Result<St, String>,
    ) -> Result<Failed, String> {
        let token = self.claim_token(id)?;
        let failed = if self.exhausted(self.msgs[&id].deliveries) {
            self.failed(id)
        } else {
            self.msgs.get_mut(&id).expect("claimed").st = back()?;
            Failed::Back
        };
        self.ended_tokens.push(token);
        Ok(failed)
    }

    /// The claim of `id` was rejected: to the dead letters.
    pub fn rejected(&mut self, id: u64) -> Result<Failed, String> {
        let token = self.claim_token(id)?;
        let failed = self.failed(id);
        self.ended_tokens.push(token);
        Ok(failed)
    }

    fn failed(&mut self, id: u64) -> Failed {
        match self.dead_letter(id) {
            Some(_) => Failed::DeadLettered,
            None => Failed::WaitsForRoom,
        }
    }
}
