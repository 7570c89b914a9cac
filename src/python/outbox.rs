//! What scripts send with an OSC Out DAT's `sendOSC`/`sendBytes`, kept by the operator's name
//! until the operator hands it to the graph after the frame's cooks (`Operator::osc_out`).
//! Bounded: past [`MAX_QUEUED`] messages a send raises in the script instead of growing.
//!
//! Part of the floor of `python/`: plain data, no Python objects.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::cook::OscOutgoing;

/// Messages (and packets) waiting at most, over all OSC Out DATs: 16 per channel of a 1000
/// channel frame at 60 fps is far beyond any script's need; a runaway loop hits it in a frame.
pub const MAX_QUEUED: usize = 65_536;

#[derive(Default)]
struct Outbox {
    by_op: HashMap<String, Vec<OscOutgoing>>,
    len: usize,
}

static OUTBOX: Mutex<Option<Outbox>> = Mutex::new(None);

/// Queues `items` for the OSC Out DAT `op`; refused whole when they would pass the bound.
pub fn push(op: &str, items: Vec<OscOutgoing>) -> Result<(), String> {
    // A panic while holding the lock leaves plain data: carry on with it.
    let mut g = OUTBOX.lock().unwrap_or_else(|e| e.into_inner());
    let o = g.get_or_insert_with(Outbox::default);
    if o.len + items.len() > MAX_QUEUED {
        return Err(format!(
            "{} OSC messages are already waiting to be sent this frame (at most {MAX_QUEUED})",
            o.len
        ));
    }
    o.len += items.len();
    o.by_op.entry(op.to_string()).or_default().extend(items);
    Ok(())
}

/// Takes what is queued for `op`.
pub fn take(op: &str) -> Vec<OscOutgoing> {
    let mut g = OUTBOX.lock().unwrap_or_else(|e| e.into_inner());
    let Some(o) = g.as_mut() else {
        return Vec::new();
    };
    let items = o.by_op.remove(op).unwrap_or_default();
    o.len -= items.len();
    items
}
