//! Decoding on several threads, handed on in order.
//!
//! A source gives the pool jobs (a chunk of raw records and how to decode them); worker threads run
//! them, each with its own [`Decoder`] and [`BatchBuilder`]; the source takes the results back in the
//! order it gave the jobs, so batches, and every result downstream, are those of a one-thread decode.

use super::capture::Decoder;
use crate::record::{Batch, BatchBuilder};
use crate::topology::Output;
use std::collections::BTreeMap;
use std::sync::{mpsc, Arc, Mutex};
use std::thread::Scope;

/// A record that could not be decoded: its text as read, where it was, and why.
pub struct DeadLine {
    pub text: String,
    pub at: serde_json::Value,
    pub reason: String,
}

/// A job's result.
#[derive(Default)]
pub struct Decoded {
    pub batch: Batch,
    /// Records read, decoded or not (the stage's `in` count).
    pub records: u64,
    pub dead: Vec<DeadLine>,
    /// The job's input buffer, emptied, back for the source to fill again.
    pub spare: Vec<u8>,
}

type Job = Box<dyn FnOnce(&mut Decoder, &mut BatchBuilder) -> Decoded + Send>;

pub struct Pool {
    jobs: Option<mpsc::Sender<(u64, Job)>>,
    done: mpsc::Receiver<(u64, Decoded)>,
    ready: BTreeMap<u64, Decoded>,
    sent: u64,
    next: u64,
    /// Jobs in flight at most: enough to keep every worker busy while the oldest is handed on, few
    /// enough that memory stays flat.
    limit: u64,
    /// Input buffers of jobs handed on, for reuse.
    spares: Vec<Vec<u8>>,
}

impl Pool {
    /// Starts `threads` workers, which end with the scope once the pool is dropped.
    pub fn start<'scope>(scope: &'scope Scope<'scope, '_>, threads: usize, name: &str) -> Pool {
        let (jobs, rx) = mpsc::channel::<(u64, Job)>();
        let rx = Arc::new(Mutex::new(rx));
        let (done_tx, done) = mpsc::channel();
        for i in 0..threads {
            let (rx, done_tx) = (rx.clone(), done_tx.clone());
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn_scoped(scope, move || {
                    let mut decoder = Decoder::default();
                    let mut builder = BatchBuilder::default();
                    loop {
                        let job = rx.lock().expect("decoders do not panic").recv();
                        let Ok((seq, job)) = job else { return };
                        if done_tx
                            .send((seq, job(&mut decoder, &mut builder)))
                            .is_err()
                        {
                            return;
                        }
                    }
                })
                .expect("a decode thread starts");
        }
        Pool {
            jobs: Some(jobs),
            done,
            ready: BTreeMap::new(),
            sent: 0,
            next: 0,
            limit: threads as u64 * 4,
            spares: Vec::new(),
        }
    }

    pub fn submit(
        &mut self,
        job: impl FnOnce(&mut Decoder, &mut BatchBuilder) -> Decoded + Send + 'static,
    ) {
        let jobs = self.jobs.as_ref().expect("the pool is open");
        jobs.send((self.sent, Box::new(job)))
            .expect("decode workers live as long as the pool");
        self.sent += 1;
    }

    pub fn is_full(&self) -> bool {
        self.sent - self.next >= self.limit
    }

    pub fn is_idle(&self) -> bool {
        self.sent == self.next
    }

    /// The next result in order, waiting for it if `wait`; `None` if it is not there (or nothing is in
    /// flight).
    pub fn next(&mut self, wait: bool) -> Option<Decoded> {
        if self.is_idle() {
            return None;
        }
        while !self.ready.contains_key(&self.next) {
            let got = if wait {
                self.done.recv().ok()
            } else {
                self.done.try_recv().ok()
            };
            let (seq, d) = got?;
            self.ready.insert(seq, d);
        }
        self.next += 1;
        self.ready.remove(&(self.next - 1))
    }

    /// Hands results on in order (dead letters first, then the batch): those ready now, or enough to
    /// make room for another job, or all of them. `false` if nobody listens any more.
    pub fn deliver(&mut self, out: &mut Output, until: Until) -> bool {
        loop {
            let wait = match until {
                Until::Ready => false,
                Until::Room => self.is_full(),
                Until::Done => true,
            };
            let Some(mut d) = self.next(wait) else {
                return true;
            };
            if d.spare.capacity() > 0 {
                self.spares.push(std::mem::take(&mut d.spare));
            }
            if !hand_on(d, out) {
                return false;
            }
        }
    }

    /// An emptied input buffer of a job handed on, if there is one.
    pub fn spare(&mut self) -> Vec<u8> {
        self.spares.pop().unwrap_or_default()
    }
}

/// Hands a result on: its count, its dead letters, then its batch. `false` if nobody listens any more.
pub fn hand_on(d: Decoded, out: &mut Output) -> bool {
    out.stats
        .records_in
        .fetch_add(d.records, std::sync::atomic::Ordering::Relaxed);
    for line in d.dead {
        out.dead_line(&line.text, line.at, &line.reason);
    }
    out.emit(d.batch)
}

/// How much [`Pool::deliver`] hands on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Until {
    /// What is decoded already.
    Ready,
    /// Also waits until another job may be given.
    Room,
    /// Everything given so far.
    Done,
}
