//! The single-node write path: a group-commit log. Commands from concurrent requests
//! queue here; one thread applies whatever has queued as one batch, fsyncs once, and
//! only then answers every request of the batch. An acknowledged write is on disk.
//!
//! A cluster replaces this with Raft, which replicates the same commands before the same
//! state machine applies them.

use tokio::sync::{mpsc, oneshot};

use super::{Command, Receipt, StateMachine, StoreError};

/// How many commands one batch (one transaction, one fsync) may hold.
const MAX_BATCH: usize = 1024;

struct Pending {
    command: Command,
    reply: oneshot::Sender<Result<Receipt, StoreError>>,
}

#[derive(Clone)]
pub struct CommandLog {
    queue: mpsc::Sender<Pending>,
}

impl CommandLog {
    /// Starts the commit thread, which owns the state machine from now on.
    pub fn start(state_machine: StateMachine) -> std::io::Result<Self> {
        let (queue, receiver) = mpsc::channel(MAX_BATCH * 4);
        std::thread::Builder::new().name("commit".into()).spawn(move || run(state_machine, receiver))?;
        Ok(CommandLog { queue })
    }

    /// Applies a command durably and returns its receipt.
    pub async fn submit(&self, command: Command) -> Result<Receipt, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue.send(Pending { command, reply }).await.map_err(|_| StoreError::CommitFailed)?;
        answer.await.map_err(|_| StoreError::CommitFailed)?
    }
}

fn run(mut state_machine: StateMachine, mut receiver: mpsc::Receiver<Pending>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = receiver.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let (commands, replies): (Vec<_>, Vec<_>) = batch.drain(..).map(|p| (p.command, p.reply)).unzip();
        let result = state_machine.apply_batch(&commands).and_then(|receipts| {
            state_machine.store().flush()?;
            Ok(receipts)
        });
        match result {
            Ok(receipts) => {
                for (reply, receipt) in replies.into_iter().zip(receipts) {
                    let _ = reply.send(Ok(receipt));
                }
            }
            Err(error) => {
                // Fail closed: what was applied may not be durable, so stop taking writes.
                tracing::error!(%error, "commit failed; the vault stops accepting writes");
                for reply in replies {
                    let _ = reply.send(Err(StoreError::CommitFailed));
                }
                return;
            }
        }
    }
}
