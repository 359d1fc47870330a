//! [`EngineEvents`]: the engine's watch streams (the typed tasks
//! collection, queue, connectivity) merged into one channel of [`EngineEvent`]s for the UI
//! loop.

use sync_facade::{OfflineSyncEngine, SyncError};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_stream::{Stream, StreamExt};

use crate::app::{EngineEvent, TASKS};
use crate::task::Task;

/// The engine's reports, in arrival order. The forwarding tasks end when
/// the engine closes or when this is dropped.
#[derive(Debug)]
pub struct EngineEvents {
    receiver: mpsc::UnboundedReceiver<EngineEvent>,
    _forwarders: JoinSet<()>,
}

impl EngineEvents {
    /// Starts watching `engine`'s tasks (through the typed collection, so
    /// the list arrives as [`Task`]s), queue and connectivity.
    ///
    /// # Errors
    /// [`SyncError::Invalid`] if the tasks entity name were refused.
    pub fn watch(engine: &OfflineSyncEngine) -> Result<Self, SyncError> {
        let (sender, receiver) = mpsc::unbounded_channel();
        let mut forwarders = JoinSet::new();
        forwarders.spawn(forward(
            engine.collection::<Task>(TASKS)?.watch(),
            sender.clone(),
            EngineEvent::Tasks,
        ));
        forwarders.spawn(forward(engine.watch_queue(), sender.clone(), EngineEvent::Queue));
        forwarders.spawn(forward(
            engine.watch_connectivity(),
            sender,
            EngineEvent::Connectivity,
        ));
        Ok(Self {
            receiver,
            _forwarders: forwarders,
        })
    }

    /// The next report, waiting for it; `None` once every stream ended.
    pub async fn next(&mut self) -> Option<EngineEvent> {
        self.receiver.recv().await
    }

    /// The next report if one is waiting.
    pub fn try_next(&mut self) -> Option<EngineEvent> {
        self.receiver.try_recv().ok()
    }
}

async fn forward<T>(
    mut stream: impl Stream<Item = T> + Unpin,
    sender: mpsc::UnboundedSender<EngineEvent>,
    wrap: fn(T) -> EngineEvent,
) {
    while let Some(value) = stream.next().await {
        if sender.send(wrap(value)).is_err() {
            return;
        }
    }
}
