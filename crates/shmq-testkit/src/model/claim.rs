//! The expected answer of a claim, message by message, whatever clock the
//! driver runs on (whether a delayed message was due is the driver's to
//! judge): the message is one the queue holds and nobody holds, with the
//! payload sent, its key, version and position and the next delivery
//! count; no other live claim holds its key (G3, G7); it is newer than
//! its key's last acked version (G7).

use super::payload::{id_of, payload};
use super::state::{Model, Msg, St};
use shmq::Message;

impl Model {
    /// Checks a message a claim returned; returns its id and what the
    /// model has for it.
    pub fn check_claimed(&self, msg: &Message<'_>) -> Result<(u64, Msg), String> {
        let data = msg.data().map_err(|e| format!("claim: data: {e:?}"))?;
        let id = id_of(&data);
        let Some(m) = self.msgs.get(&id).cloned() else {
            return Err(format!(
                "claim got message {id} ({msg:?}), which is not in the queue"
            ));
        };
        if data != payload(id, m.len) {
            return Err(format!(
                "claim of {id}: payload {data:?} is not the one sent"
            ));
        }
        let got = (msg.key(), msg.version(), msg.position());
        if got != (m.key, m.version, m.position) {
            return Err(format!(
                "claim of {id}: (key, version, position) {got:?}, the model has {m:?}"
            ));
        }
        if msg.deliveries() != m.deliveries + 1 {
            return Err(format!(
                "claim of {id}: delivery {}, the model says {} ({m:?})",
                msg.deliveries(),
                m.deliveries + 1
            ));
        }
        // A delay not due within the case (`due: None`) never runs out.
        let held = m.st.is_claimed() || matches!(m.st, St::Reserved { .. } | St::DlqWait);
        if held || m.st == (St::Delayed { due: None }) {
            return Err(format!("claim got {id}, which is {:?} (G3)", m.st));
        }
        if let Some(other) = self.held_keys().get(&m.key) {
            return Err(format!(
                "claim got {id} {m:?} while message {other} {:?} of the same key is claimed \
                 (G7: one claim per key)",
                self.msgs[other]
            ));
        }
        if self.doomed(&m) {
            return Err(format!(
                "claim got {id} {m:?}, not newer than its key's last acked version {}: it must be \
                 skipped, never delivered (G7)",
                self.keys.last_acked(m.key)
            ));
        }
        Ok((id, m))
    }

    /// Handle `h` holds message `id` with `token` until `deadline`. A
    /// claimed message stays its key's waiting one: not replaceable while
    /// claimed, but again once back, unless a newer one was queued.
    pub fn claimed(&mut self, id: u64, h: usize, token: u64, deadline: u64) {
        let m = self.msgs.get_mut(&id).expect("a claimed message");
        m.deliveries += 1;
        m.st = St::Claimed { h, token, deadline };
    }
}
