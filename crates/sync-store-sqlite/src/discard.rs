//! Discarding a record's queued change: one transaction applying
//! `sync_core::discard::plan_discard` to the record's item, document and
//! server copy; events go out after the commit, as for a save.

use sync_core::discard::plan_discard;
use sync_core::{DiscardOutcome, RecordKey, Timestamp};

use crate::changes::Changes;
use crate::rows;
use crate::writer::{WorkResult, Writer};

impl Writer {
    /// The work of one discard inside its transaction.
    pub(crate) async fn discard(
        &mut self,
        key: &RecordKey,
        revert: bool,
        now: Timestamp,
    ) -> WorkResult<DiscardOutcome> {
        let mut changes = Changes::default();
        self.load(&mut changes, &[key], true).await?;
        self.statements.add(1);
        let copy = rows::load_copies(&mut self.connection, &[key]).await?.remove(key);
        let item = changes.state(key).item.clone();
        let plan = plan_discard(item.as_ref(), copy.as_ref(), revert)
            .map_err(|refusal| refusal.to_store_error(key))?;
        changes.queue(key, plan.queue);
        if let Some(document) = plan.document {
            changes.document(key, document, now);
        }
        changes.copy(key, plan.copy);
        changes.write(&mut self.connection, &self.statements).await?;
        Ok((plan.outcome, changes.events))
    }
}
