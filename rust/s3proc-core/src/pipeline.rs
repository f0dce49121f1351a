//! The mechanics shared by the conversion drivers: a reader thread that
//! cuts the input into pieces, and up to [`LOOKAHEAD`] pieces parsed at once
//! as tasks on the rayon pool, handed back in input order.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, TryRecvError};
use std::time::Duration;

use crate::error::{Error, Result};

/// Pieces read or parsed ahead of the one being encoded.
pub const LOOKAHEAD: usize = 4;

/// A job parsing one piece, ready to run on the pool.
pub type Job<R> = Box<dyn FnOnce() -> Result<R> + Send>;

/// Pieces `P` read on a thread, parsed into `R` on the pool, in order.
pub struct Pipeline<P, R> {
    name: String,
    pieces: Receiver<Result<Option<P>>>,
    inflight: VecDeque<Receiver<Result<R>>>,
    input_done: bool,
}

impl<P: Send + 'static, R: Send + 'static> Pipeline<P, R> {
    /// Starts the reader thread, which calls `next` until it gives `None`
    /// or an error.
    ///
    /// # Errors
    /// The thread cannot be started.
    pub fn start(
        name: &str,
        mut next: impl FnMut() -> Result<Option<P>> + Send + 'static,
    ) -> Result<Self> {
        let (tx, pieces) = sync_channel(LOOKAHEAD);
        let thread_name = name.to_owned();
        std::thread::Builder::new()
            .name("s3proc-reader".into())
            .spawn(move || {
                let died = catch_unwind(AssertUnwindSafe(|| loop {
                    let piece = next();
                    let last = !matches!(piece, Ok(Some(_)));
                    if tx.send(piece).is_err() || last {
                        return;
                    }
                }));
                if died.is_err() {
                    let _ = tx.send(Err(Error::internal(
                        &thread_name,
                        "the reader thread panicked",
                    )));
                }
            })
            .map_err(|e| Error::io(name, e))?;
        Ok(Self {
            name: name.to_owned(),
            pieces,
            inflight: VecDeque::new(),
            input_done: false,
        })
    }

    /// Whether every piece has been read and handed back.
    pub fn finished(&self) -> bool {
        self.input_done && self.inflight.is_empty()
    }

    /// Starts `job(piece)` for the pieces read so far (up to
    /// [`LOOKAHEAD`] in flight), then waits for the oldest result. `None`:
    /// nothing was ready within 100 ms (the caller checks whether to stop),
    /// or the input has ended.
    ///
    /// # Errors
    /// Read errors of the reader thread, the oldest job's error, and a job
    /// that panicked (as [`Error::Internal`]).
    pub fn step(&mut self, job: &mut dyn FnMut(P) -> Job<R>) -> Result<Option<R>> {
        while self.inflight.len() < LOOKAHEAD && !self.input_done {
            let next = if self.inflight.is_empty() {
                match self.pieces.recv_timeout(Duration::from_millis(100)) {
                    Ok(next) => Some(next),
                    Err(RecvTimeoutError::Timeout) => return Ok(None),
                    Err(RecvTimeoutError::Disconnected) => None,
                }
            } else {
                match self.pieces.try_recv() {
                    Ok(next) => Some(next),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => None,
                }
            };
            let Some(next) = next else {
                return Err(Error::internal(
                    &self.name,
                    "the reader thread stopped early",
                ));
            };
            let Some(piece) = next? else {
                self.input_done = true;
                break;
            };
            let (tx, rx) = sync_channel(1);
            let work = job(piece);
            let name = self.name.clone();
            rayon::spawn(move || {
                let result = catch_unwind(AssertUnwindSafe(work))
                    .unwrap_or_else(|_| Err(Error::internal(&name, "a parser panicked")));
                let _ = tx.send(result);
            });
            self.inflight.push_back(rx);
        }
        let Some(front) = self.inflight.pop_front() else {
            return Ok(None);
        };
        match front.recv() {
            Ok(result) => result.map(Some),
            Err(_) => Err(Error::internal(&self.name, "a parser vanished")),
        }
    }
}
