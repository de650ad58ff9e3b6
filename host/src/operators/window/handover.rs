//! A window stage's part in `tributary run --watch`: what it hands to the next version of its plugin
//! besides the state its checkpoints save.

use super::{Accumulators, WindowOperator, Windows};
use crate::record::{Ack, Key};
use crate::topology::{Handover, Operator, StageError};

/// What a window holds outside its checkpoint state and must keep across a swap.
pub(super) struct Held {
    /// The source tokens of each open pane, by window start and key: its records stay uncommitted until
    /// the new plugin emits them.
    acks: Vec<((i64, Key), Vec<Ack>)>,
    /// The watermark restored at a restart: records read again before it are skipped, not counted twice.
    resumed: Option<i64>,
}

impl WindowOperator {
    pub(super) fn hand_over(&mut self) -> Result<Handover, StageError> {
        let state = self
            .windows
            .save()
            .map_err(|e| StageError::with("cannot save the window state", e))?;
        // Without the panes a new plugin cannot load, the watermark still holds: records behind it
        // stay late, and windows already emitted are not emitted again.
        let reset = serde_json::json!({
            "v": state["v"],
            "watermark": state["watermark"],
            "max_time": state["max_time"],
            "panes": [],
        });
        Ok(Handover {
            state: Some(state),
            reset: Some(reset),
            held: Some(Box::new(self.windows.take_held())),
        })
    }

    pub(super) fn take_over_from(
        &mut self,
        handover: &mut Handover,
        reset: bool,
    ) -> Result<(), StageError> {
        let state = if reset {
            handover.reset.take()
        } else {
            handover.state.take()
        };
        if let Some(state) = state {
            self.restore(state)?;
        }
        let Some(held) = handover.held.take_if(|h| h.is::<Held>()) else {
            return Ok(());
        };
        let held = held.downcast::<Held>().expect("checked above");
        self.windows.give_held(*held, !reset);
        Ok(())
    }
}

impl<A: Accumulators> Windows<A> {
    /// Takes what the panes hold besides their state, for the next version of the plugin.
    pub(super) fn take_held(&mut self) -> Held {
        let keys = &self.keys;
        let acks = (self.panes.iter_mut())
            .filter(|(_, p)| !p.acks.is_empty())
            .map(|(&(start, key), p)| ((start, keys.key(key).clone()), std::mem::take(&mut p.acks)))
            .collect();
        Held {
            acks,
            resumed: self.resumed,
        }
    }

    /// Gives the panes loaded from the state what [`Windows::take_held`] took from the old ones;
    /// without `panes_kept` (a reset) only what does not belong to a pane.
    pub(super) fn give_held(&mut self, held: Held, panes_kept: bool) {
        self.resumed = held.resumed;
        // After a reset the panes are gone, and with them what their tokens held back.
        if !panes_kept {
            return;
        }
        for ((start, key), acks) in held.acks {
            let id = self.keys.id(key);
            if let Some(pane) = self.panes.get_mut(&(start, id)) {
                Ack::merge_into(&mut pane.acks, &acks);
            }
        }
        self.keys.sweep();
    }
}
