//! What the Kafka source commits, and what it hands on for checkpoints: the offsets that are durable
//! downstream with the window watermarks in their metadata (see `resume`), the barriers and positions
//! of a run with checkpoints, the commit of each complete checkpoint, and the watermarks a restart
//! restores from the last commit.

use super::*;

impl KafkaSource {
    /// The source's position for a checkpoint: the next offset to read per partition.
    pub(super) fn position(&self, reader: &Reader, pending: &Pending) -> serde_json::Value {
        let offsets: Vec<serde_json::Value> = pending
            .next
            .iter()
            .enumerate()
            .filter_map(|(slot, next)| {
                let (topic, partition) = reader.slot(slot);
                next.map(|n| serde_json::json!([topic, partition, n]))
            })
            .collect();
        serde_json::json!({ "group": self.group_id, "offsets": offsets })
    }

    /// Hands on the barriers that are due, and commits the offsets of checkpoints written since the
    /// last commit.
    pub(super) fn checkpoint_work(
        &self,
        reader: &Reader,
        pending: &Pending,
        out: &mut Output,
        pool: &mut Pool,
        committed: &mut u64,
        reporter: &Reporter,
    ) {
        while let Some(id) = out.checkpoint_due() {
            self.barrier(id, reader, pending, out, pool);
        }
        let done = out.checkpoints().completed_after(&self.stage, *committed);
        if let Some((id, position)) = done {
            *committed = id;
            self.commit_checkpoint(reader, id, &position, CommitMode::Async, reporter);
        }
    }

    /// Hands on every decoded batch, then barrier `id` with the position after them.
    pub(super) fn barrier(
        &self,
        id: u64,
        reader: &Reader,
        pending: &Pending,
        out: &mut Output,
        pool: &mut Pool,
    ) {
        pool.deliver(out, Until::Done);
        out.barrier(id, self.position(reader, pending));
    }

    /// Commits the offsets of checkpoint `id` (a source's position in it), naming it in the metadata.
    pub(super) fn commit_checkpoint(
        &self,
        reader: &Reader,
        id: u64,
        position: &serde_json::Value,
        mode: CommitMode,
        reporter: &Reporter,
    ) -> bool {
        let Ok(offsets) = positions_from_json(position) else {
            return false;
        };
        let offsets = offsets.iter().map(|(t, p, next)| (t.as_str(), *p, *next));
        let metadata = resume::encode_checkpoint(id);
        let what = format!("the offsets of checkpoint {id}");
        self.commit_offsets(reader, offsets, &metadata, mode, reporter, &what)
    }

    /// Commits each (topic, partition, next offset) with `metadata`. A failure is reported, as the
    /// commit of `what`, and gives `false`: the records are read again after a restart.
    fn commit_offsets<'a>(
        &self,
        reader: &Reader,
        offsets: impl IntoIterator<Item = (&'a str, i32, i64)>,
        metadata: &str,
        mode: CommitMode,
        reporter: &Reporter,
        what: &str,
    ) -> bool {
        let mut tpl = TopicPartitionList::new();
        for (topic, partition, next) in offsets {
            let mut e = tpl.add_partition(topic, partition);
            if e.set_offset(Offset::Offset(next)).is_err() {
                return false;
            }
            e.set_metadata(metadata);
        }
        if tpl.count() == 0 {
            return true;
        }
        match reader.consumer().commit(&tpl, mode) {
            Ok(()) => true,
            Err(e) => {
                reporter.error(
                    &e,
                    &format!(
                        "committing {what} for group `{}` failed: {e}",
                        self.group_id
                    ),
                );
                false
            }
        }
    }

    /// Hands the window watermarks stored with the committed offsets to the progress board, before the
    /// first batch. Unreadable metadata restores nothing from that partition: records read again then
    /// form windows anew, as before watermarks were committed.
    pub(super) fn restore(&self, committed: &TopicPartitionList, progress: &Progress) {
        let mut parts = Vec::new();
        for e in committed.elements() {
            if !matches!(e.offset(), Offset::Offset(n) if n >= 0) {
                continue;
            }
            match resume::decode(e.metadata()) {
                Ok(w) => parts.push(w),
                Err(err) => eprintln!(
                    "warning: {}: partition {} of `{}`: {err}; its records read again may be emitted again",
                    self.label(),
                    e.partition(),
                    e.topic()
                ),
            }
        }
        let watermarks = resume::merge(parts);
        if watermarks.is_empty() {
            return;
        }
        let stages = watermarks
            .keys()
            .map(|s| format!("`{s}`"))
            .collect::<Vec<_>>()
            .join(", ");
        eprintln!(
            "tributary: {} restores the watermarks of {stages} from the last commit of group `{}`",
            self.label(),
            self.group_id
        );
        progress.restore(watermarks);
    }

    /// Commits the offsets after the done prefix of each partition. `all` resends every known point (the
    /// last commit), not only those that moved. Failures are reported, not fatal: the records are read
    /// again after a restart, which at-least-once allows.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn commit(
        &self,
        reader: &Reader,
        shared: &Shared,
        out: &Output,
        mode: CommitMode,
        all: bool,
        reporter: &Reporter,
    ) -> bool {
        let points = {
            let mut t = shared.lock();
            if all {
                t.take_commits();
                t.commit_points()
            } else {
                t.take_commits()
            }
        };
        if points.is_empty() {
            return true;
        }
        // Dead letters of the records these offsets cover reach the disk before the offsets do.
        if let Err(e) = out.sync_dead_letters() {
            eprintln!(
                "warning: {}: cannot write the dead-letter file ({e}); offsets are not committed, so those records are read again",
                self.label()
            );
            return false;
        }
        let progress = out.progress();
        // After the points: a batch done by now had its windows' watermarks reported before it was done
        // (see `Progress`), so the snapshot covers every window the committed records went into.
        let metadata = resume::encode(&progress.snapshot()).unwrap_or_else(|| {
            if !self.said_metadata_too_long.swap(true, Ordering::Relaxed) {
                eprintln!(
                    "warning: {}: the window watermarks exceed the {} bytes of kafka commit metadata; committing offsets without them, so a restart may emit windows again",
                    self.label(),
                    resume::MAX_METADATA_BYTES
                );
            }
            String::new()
        });
        let offsets = points.into_iter().map(|(slot, next)| {
            let (topic, partition) = reader.slot(slot);
            (topic, partition, next)
        });
        self.commit_offsets(reader, offsets, &metadata, mode, reporter, "offsets")
    }

    /// How a run with checkpoints ends. At the end of the input, once every stage has flushed and
    /// written, a last checkpoint holds the end positions and no state. At a stop, the last barrier
    /// goes out after what was read, and its checkpoint is awaited for `shutdown_timeout`. Either way
    /// its offsets are committed; a checkpoint not written in time leaves the previous one standing.
    pub(super) fn last_checkpoint(
        &self,
        ended: bool,
        reader: &Reader,
        pending: &Pending,
        out: &mut Output,
        committed: u64,
        reporter: &Reporter,
    ) -> Result<(), StageError> {
        let checkpoints = out.checkpoints().clone();
        let id = if ended {
            out.close();
            checkpoints.source_ended(&self.stage, self.position(reader, pending));
            checkpoints.wait_final(&out.stop_flag())
        } else {
            let last = checkpoints.request_final();
            while let Some(id) = out.checkpoint_due() {
                out.barrier(id, self.position(reader, pending));
            }
            out.close();
            let timeout = checkpoints.shutdown_timeout();
            match last {
                Some(id) if checkpoints.wait(id, timeout) => Some(id),
                Some(id) => {
                    eprintln!(
                        "warning: {}: checkpoint {id} was not complete within `shutdown_timeout` ({timeout:?}); a restart resumes from the one before it",
                        self.label()
                    );
                    None
                }
                None => None,
            }
        };
        let done =
            id.and_then(|id| checkpoints.completed_after(&self.stage, committed.min(id - 1)));
        if let Some((id, position)) = done {
            if !self.commit_checkpoint(reader, id, &position, CommitMode::Sync, reporter) {
                eprintln!(
                    "warning: {}: the offsets of checkpoint {id} could not be committed; a restart resumes from that checkpoint all the same",
                    self.label()
                );
            }
        }
        Ok(())
    }
}

/// A Kafka source's position in a checkpoint: (topic, partition, next offset) per partition.
pub(super) fn positions_from_json(
    p: &serde_json::Value,
) -> Result<Vec<(String, i32, i64)>, String> {
    let bad = || {
        "the checkpoint's kafka position is not readable; move the checkpoint directory away to start over"
            .to_string()
    };
    p.get("offsets")
        .and_then(serde_json::Value::as_array)
        .ok_or_else(bad)?
        .iter()
        .map(|e| {
            let e = e.as_array().filter(|e| e.len() == 3).ok_or_else(bad)?;
            let entry = || {
                Some((
                    e[0].as_str()?.to_string(),
                    i32::try_from(e[1].as_i64()?).ok()?,
                    e[2].as_i64()?,
                ))
            };
            entry().ok_or_else(bad)
        })
        .collect()
}
