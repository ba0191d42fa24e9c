//! Applies the cluster command the state machine keeps: node ids handed out once each,
//! so that no Raft node id is ever reused.

use super::{read, write, Outcome};
use crate::store::command::Applied;
use crate::store::keys;
use crate::store::staged::Staged;
use crate::store::StoreError;

/// The next unused node id. Node 1 is the node that bootstrapped the cluster.
pub(super) fn allocate_node_id(staged: &mut Staged) -> Result<Outcome, StoreError> {
    let next: u64 = read(staged, &keys::meta(keys::NEXT_NODE_ID))?.unwrap_or(2);
    write(staged, keys::meta(keys::NEXT_NODE_ID), &(next + 1))?;
    Ok(Ok(Applied::NodeId(next)))
}
