//! The batch-forming queue: Triton's dynamic batcher rules as a pure state machine.
//!
//! Time comes in as an argument (`now`), nothing here sleeps or does IO, so every rule is
//! tested with a fake clock. The driver in [`super`] owns one `BatchQueue` per model version
//! and calls [`BatchQueue::poll`] whenever an instance is free.
//!
//! The rules, as Triton documents them:
//! - Requests wait in priority levels (1 is highest), FIFO within a level.
//! - A batch is formed only when an instance is free, from the head of the queue in priority
//!   order, taking requests while their non-batch shapes match and the rows fit in
//!   `max_batch_size`; it stops at the first request that does not fit (order is never skipped).
//! - The batch is sent when it is full, when the next request cannot join it, when the queued
//!   rows form a preferred batch size, when the delay is 0, or when its oldest request has
//!   waited `max_queue_delay`. Otherwise the queue waits for more requests until then.
//! - A request past its queue timeout is rejected (`REJECT`) or moved behind every request of
//!   its level that has not timed out (`DELAY`).
//! - A level holding `max_queue_size` requests rejects new ones at once.
//!
//! Text models add a token budget, as text-embeddings-inference does: every row of a batch is
//! padded to the batch's longest sequence, so a batch also stops before its padded tokens
//! (longest sequence × rows) would exceed `max_batch_tokens`. Requests that count no tokens
//! (0) never hit the budget.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

/// What happens to a request whose queue timeout expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutAction {
    /// Fail it.
    Reject,
    /// Keep it, behind the requests of its level that have not timed out.
    Delay,
}

/// The queue policy of one priority level (Triton's `ModelQueuePolicy`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LevelPolicy {
    /// What to do on timeout.
    pub timeout_action: TimeoutAction,
    /// Queue timeout for requests that set none; `None` waits forever.
    pub default_timeout: Option<Duration>,
    /// Whether a request's `timeout` parameter replaces the default.
    pub allow_timeout_override: bool,
    /// Most requests this level holds.
    pub max_queue_size: usize,
}

/// How a model version's requests are batched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuePolicy {
    /// Whether requests are merged (dynamic batching); without it each request runs alone.
    pub dynamic: bool,
    /// Most rows in one batch.
    pub max_batch_size: usize,
    /// Most padded tokens (longest sequence × rows) in one batch; `None` for no bound.
    pub max_batch_tokens: Option<usize>,
    /// Preferred batch sizes, ascending.
    pub preferred_batch_sizes: Vec<usize>,
    /// How long the oldest request of a partial batch may wait for more.
    pub max_queue_delay: Duration,
    /// The level of requests that name none (1-based).
    pub default_priority: usize,
    /// One policy per level; index 0 is level 1.
    pub levels: Vec<LevelPolicy>,
}

/// Why a request was not queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdmitError {
    /// Its level is full.
    QueueFull {
        /// The level.
        level: usize,
        /// Its bound.
        max: usize,
    },
    /// It asked for a priority level the model does not have.
    InvalidPriority {
        /// What it asked for.
        priority: u64,
        /// How many levels there are.
        levels: usize,
    },
}

/// A queued request.
#[derive(Debug)]
pub struct Entry<T> {
    /// Arrival order, unique per queue.
    pub seq: u64,
    /// Rows it contributes to a batch.
    pub rows: usize,
    /// Tokens of its longest sequence (0 when the model counts none).
    pub tokens: usize,
    /// Requests batch together only with equal keys (datatypes and non-batch dims).
    pub shape_key: u64,
    /// When it was queued.
    pub enqueued: Instant,
    deadline: Option<Instant>,
    level: usize,
    /// The caller's data (the request and its reply channel).
    pub payload: T,
}

/// The size of a request: its rows and, for text models, the tokens of its longest sequence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestSize {
    /// Rows (its batch dimension).
    pub rows: usize,
    /// Tokens of its longest sequence; 0 when the model counts none.
    pub tokens: usize,
}

impl From<usize> for RequestSize {
    /// A request of `rows` rows that counts no tokens.
    fn from(rows: usize) -> Self {
        RequestSize { rows, tokens: 0 }
    }
}

/// Padded tokens of a batch of `rows` rows whose longest sequence has `longest` tokens.
pub fn padded_tokens(rows: usize, longest: usize) -> usize {
    rows.saturating_mul(longest)
}

/// What a free instance should do.
#[derive(Debug)]
pub enum Poll<T> {
    /// Execute these requests as one batch, in this order.
    Batch(Vec<Entry<T>>),
    /// Nothing to send before this instant (unless new requests arrive).
    WaitUntil(Instant),
    /// The queue is empty.
    Empty,
}

/// The queue of one model version.
#[derive(Debug)]
pub struct BatchQueue<T> {
    policy: QueuePolicy,
    /// Per level: requests within their timeout, then (separately) the delayed ones.
    waiting: Vec<VecDeque<Entry<T>>>,
    delayed: Vec<VecDeque<Entry<T>>>,
    next_seq: u64,
}

impl<T> BatchQueue<T> {
    /// An empty queue. A policy with no levels gets one level that never times out.
    pub fn new(mut policy: QueuePolicy) -> BatchQueue<T> {
        if policy.levels.is_empty() {
            policy.levels.push(LevelPolicy {
                timeout_action: TimeoutAction::Reject,
                default_timeout: None,
                allow_timeout_override: false,
                max_queue_size: usize::MAX,
            });
        }
        policy.default_priority = policy.default_priority.clamp(1, policy.levels.len());
        policy.preferred_batch_sizes.sort_unstable();
        let levels = policy.levels.len();
        BatchQueue {
            policy,
            waiting: (0..levels).map(|_| VecDeque::new()).collect(),
            delayed: (0..levels).map(|_| VecDeque::new()).collect(),
            next_seq: 0,
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &QueuePolicy {
        &self.policy
    }

    /// Requests waiting.
    pub fn len(&self) -> usize {
        self.waiting.iter().chain(&self.delayed).map(VecDeque::len).sum()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues a request. `priority` 0 (or `None`) means the default level; `timeout` is the
    /// request's own timeout, honoured when its level allows overrides. Returns its `seq`, or
    /// the reason together with the payload, so the caller can still answer it.
    pub fn push(
        &mut self,
        payload: T,
        size: impl Into<RequestSize>,
        shape_key: u64,
        priority: Option<u64>,
        timeout: Option<Duration>,
        now: Instant,
    ) -> Result<u64, (AdmitError, T)> {
        let levels = self.policy.levels.len();
        let level = match priority {
            None | Some(0) => self.policy.default_priority,
            Some(p) if p as usize <= levels => p as usize,
            Some(p) => return Err((AdmitError::InvalidPriority { priority: p, levels }, payload)),
        };
        let ix = level - 1;
        let policy = &self.policy.levels[ix];
        let held = self.waiting[ix].len() + self.delayed[ix].len();
        if held >= policy.max_queue_size {
            return Err((AdmitError::QueueFull { level, max: policy.max_queue_size }, payload));
        }
        let timeout = match timeout {
            Some(t) if policy.allow_timeout_override && !t.is_zero() => Some(t),
            _ => policy.default_timeout,
        };
        let RequestSize { rows, tokens } = size.into();
        let seq = self.next_seq;
        self.next_seq += 1;
        let deadline = timeout.and_then(|t| now.checked_add(t));
        self.waiting[ix].push_back(Entry { seq, rows, tokens, shape_key, enqueued: now, deadline, level: ix, payload });
        Ok(seq)
    }

    /// Applies queue timeouts: returns the rejected requests; delayed ones move behind their
    /// level's requests that have not timed out.
    pub fn expire(&mut self, now: Instant) -> Vec<Entry<T>> {
        let mut rejected = Vec::new();
        for ix in 0..self.waiting.len() {
            let action = self.policy.levels[ix].timeout_action;
            let mut kept = VecDeque::with_capacity(self.waiting[ix].len());
            for entry in self.waiting[ix].drain(..) {
                match entry.deadline {
                    Some(deadline) if deadline <= now => match action {
                        TimeoutAction::Reject => rejected.push(entry),
                        TimeoutAction::Delay => self.delayed[ix].push_back(Entry { deadline: None, ..entry }),
                    },
                    _ => kept.push_back(entry),
                }
            }
            self.waiting[ix] = kept;
        }
        rejected
    }

    /// Removes the requests `gone` says are abandoned (their client went away) and returns them.
    pub fn remove_abandoned(&mut self, mut gone: impl FnMut(&T) -> bool) -> Vec<Entry<T>> {
        let mut removed = Vec::new();
        for queue in self.waiting.iter_mut().chain(self.delayed.iter_mut()) {
            if queue.iter().any(|e| gone(&e.payload)) {
                let (out, kept): (VecDeque<_>, VecDeque<_>) = queue.drain(..).partition(|e| gone(&e.payload));
                removed.extend(out);
                *queue = kept;
            }
        }
        removed
    }

    /// The earliest instant at which a queued request times out.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.waiting.iter().flatten().filter_map(|e| e.deadline).min()
    }

    /// Requests in dispatch order: level 1 waiting, level 1 delayed, level 2 waiting, ...
    fn in_order(&self) -> impl Iterator<Item = &Entry<T>> {
        self.waiting.iter().zip(&self.delayed).flat_map(|(w, d)| w.iter().chain(d.iter()))
    }

    /// Decides what a free instance executes now (call [`BatchQueue::expire`] first).
    pub fn poll(&mut self, now: Instant) -> Poll<T> {
        if self.is_empty() {
            return Poll::Empty;
        }
        if !self.policy.dynamic {
            return Poll::Batch(self.take(1));
        }
        let mut order = self.in_order();
        let Some(first) = order.next() else { return Poll::Empty };
        let max = self.policy.max_batch_size.max(1);
        let budget = self.policy.max_batch_tokens.unwrap_or(usize::MAX);
        let mut rows = first.rows;
        let mut longest = first.tokens;
        let mut count = 1;
        let mut oldest = first.enqueued;
        let mut closed = false;
        for entry in order {
            let joined_longest = longest.max(entry.tokens);
            if entry.shape_key != first.shape_key || rows + entry.rows > max || padded_tokens(rows + entry.rows, joined_longest) > budget {
                closed = true;
                break;
            }
            rows += entry.rows;
            longest = joined_longest;
            count += 1;
            oldest = oldest.min(entry.enqueued);
        }
        let send_now = rows >= max
            || closed
            || self.policy.max_queue_delay.is_zero()
            || self.policy.preferred_batch_sizes.binary_search(&rows).is_ok()
            || now.saturating_duration_since(oldest) >= self.policy.max_queue_delay;
        if send_now {
            Poll::Batch(self.take(count))
        } else {
            Poll::WaitUntil(oldest + self.policy.max_queue_delay)
        }
    }

    /// Removes the first `count` requests in dispatch order.
    fn take(&mut self, mut count: usize) -> Vec<Entry<T>> {
        let mut batch = Vec::with_capacity(count);
        for ix in 0..self.waiting.len() {
            for queue in [&mut self.waiting[ix], &mut self.delayed[ix]] {
                while count > 0 {
                    let Some(entry) = queue.pop_front() else { break };
                    batch.push(entry);
                    count -= 1;
                }
            }
        }
        batch
    }
}

impl<T> Entry<T> {
    /// The priority level (1-based) it was queued at.
    pub fn level(&self) -> usize {
        self.level + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn level(action: TimeoutAction, timeout_ms: Option<u64>, max: usize) -> LevelPolicy {
        LevelPolicy {
            timeout_action: action,
            default_timeout: timeout_ms.map(Duration::from_millis),
            allow_timeout_override: true,
            max_queue_size: max,
        }
    }

    fn policy(max_batch: usize, preferred: &[usize], delay_ms: u64) -> QueuePolicy {
        QueuePolicy {
            dynamic: true,
            max_batch_size: max_batch,
            max_batch_tokens: None,
            preferred_batch_sizes: preferred.to_vec(),
            max_queue_delay: Duration::from_millis(delay_ms),
            default_priority: 1,
            levels: vec![level(TimeoutAction::Reject, None, 100)],
        }
    }

    fn ids(poll: Poll<&'static str>) -> Vec<&'static str> {
        match poll {
            Poll::Batch(batch) => batch.into_iter().map(|e| e.payload).collect(),
            other => panic!("expected a batch, got {other:?}"),
        }
    }

    #[test]
    fn zero_delay_sends_whatever_is_queued() {
        let t0 = Instant::now();
        let mut q = BatchQueue::new(policy(8, &[8], 0));
        assert!(matches!(q.poll(t0), Poll::Empty));
        q.push("a", 1, 0, None, None, t0).unwrap();
        q.push("b", 2, 0, None, None, t0).unwrap();
        assert_eq!(ids(q.poll(t0)), vec!["a", "b"]);
        assert!(q.is_empty());
    }

    #[test]
    fn waits_for_the_delay_then_sends_a_partial_batch() {
        let t0 = Instant::now();
        let mut q = BatchQueue::new(policy(8, &[8], 10));
        q.push("a", 1, 0, None, None, t0).unwrap();
        q.push("b", 1, 0, None, None, t0 + 2 * MS).unwrap();
        match q.poll(t0 + 3 * MS) {
            Poll::WaitUntil(at) => assert_eq!(at, t0 + 10 * MS),
            other => panic!("{other:?}"),
        }
        assert_eq!(ids(q.poll(t0 + 10 * MS)), vec!["a", "b"]);
    }

    #[test]
    fn a_preferred_size_or_a_full_batch_goes_at_once() {
        let t0 = Instant::now();
        let mut q = BatchQueue::new(policy(8, &[4, 8], 1000));
        for id in ["a", "b", "c"] {
            q.push(id, 1, 0, None, None, t0).unwrap();
        }
        assert!(matches!(q.poll(t0), Poll::WaitUntil(_)));
        q.push("d", 1, 0, None, None, t0).unwrap();
        assert_eq!(ids(q.poll(t0)), vec!["a", "b", "c", "d"]);
        // Rows count, not requests: 3 + 5 = 8 = max.
        q.push("e", 3, 0, None, None, t0).unwrap();
        q.push("f", 5, 0, None, None, t0).unwrap();
        assert_eq!(ids(q.poll(t0)), vec!["e", "f"]);
    }

    #[test]
    fn a_batch_never_exceeds_max_and_keeps_order() {
        let t0 = Instant::now();
        let mut q = BatchQueue::new(policy(4, &[4], 1000));
        q.push("a", 3, 0, None, None, t0).unwrap();
        q.push("b", 2, 0, None, None, t0).unwrap();
        q.push("c", 1, 0, None, None, t0).unwrap();
        // "b" does not fit after "a"; "c" would, but order is not skipped.
        assert_eq!(ids(q.poll(t0)), vec!["a"]);
        assert!(matches!(q.poll(t0), Poll::WaitUntil(_)));
        assert_eq!(ids(q.poll(t0 + 1000 * MS)), vec!["b", "c"]);
    }

    #[test]
    fn different_shapes_are_not_merged() {
        let t0 = Instant::now();
        let mut q = BatchQueue::new(policy(8, &[8], 1000));
        q.push("a", 1, 1, None, None, t0).unwrap();
        q.push("b", 1, 1, None, None, t0).unwrap();
        q.push("c", 1, 2, None, None, t0).unwrap();
        assert_eq!(ids(q.poll(t0)), vec!["a", "b"]);
        assert!(matches!(q.poll(t0), Poll::WaitUntil(_)));
    }

    #[test]
    fn without_dynamic_batching_each_request_runs_alone() {
        let t0 = Instant::now();
        let mut q = BatchQueue::new(QueuePolicy { dynamic: false, ..policy(8, &[8], 1000) });
        q.push("a", 2, 0, None, None, t0).unwrap();
        q.push("b", 1, 0, None, None, t0).unwrap();
        assert_eq!(ids(q.poll(t0)), vec!["a"]);
        assert_eq!(ids(q.poll(t0)), vec!["b"]);
    }

    #[test]
    fn priority_levels_are_served_highest_first_fifo_within() {
        let t0 = Instant::now();
        let mut p = policy(2, &[2], 0);
        p.levels = vec![level(TimeoutAction::Reject, None, 10); 3];
        p.default_priority = 2;
        let mut q = BatchQueue::new(p);
        q.push("low1", 1, 0, Some(3), None, t0).unwrap();
        q.push("mid1", 1, 0, None, None, t0).unwrap();
        q.push("high1", 1, 0, Some(1), None, t0).unwrap();
        q.push("mid2", 1, 0, Some(2), None, t0).unwrap();
        q.push("high2", 1, 0, Some(1), None, t0).unwrap();
        assert_eq!(ids(q.poll(t0)), vec!["high1", "high2"]);
        assert_eq!(ids(q.poll(t0)), vec!["mid1", "mid2"]);
        assert_eq!(ids(q.poll(t0)), vec!["low1"]);
        assert_eq!(q.push("x", 1, 0, Some(4), None, t0), Err((AdmitError::InvalidPriority { priority: 4, levels: 3 }, "x")));
    }

    #[test]
    fn a_full_level_rejects_at_once() {
        let t0 = Instant::now();
        let mut p = policy(8, &[8], 1000);
        p.levels = vec![level(TimeoutAction::Reject, None, 2), level(TimeoutAction::Reject, None, 1)];
        let mut q = BatchQueue::new(p);
        q.push("a", 1, 0, None, None, t0).unwrap();
        q.push("b", 1, 0, None, None, t0).unwrap();
        assert_eq!(q.push("c", 1, 0, None, None, t0), Err((AdmitError::QueueFull { level: 1, max: 2 }, "c")));
        // Other levels have their own bound.
        q.push("d", 1, 0, Some(2), None, t0).unwrap();
        assert!(q.push("e", 1, 0, Some(2), None, t0).is_err());
        assert_eq!(q.len(), 3);
    }

    #[test]
    fn reject_timeouts_fail_requests_and_overrides_apply() {
        let t0 = Instant::now();
        let mut p = policy(8, &[8], 1000);
        p.levels = vec![level(TimeoutAction::Reject, Some(5), 10)];
        let mut q = BatchQueue::new(p);
        q.push("default", 1, 0, None, None, t0).unwrap();
        q.push("short", 1, 0, None, Some(2 * MS), t0).unwrap();
        q.push("long", 1, 0, None, Some(50 * MS), t0).unwrap();
        assert_eq!(q.next_timeout(), Some(t0 + 2 * MS));
        assert!(q.expire(t0 + MS).is_empty());
        let gone: Vec<_> = q.expire(t0 + 2 * MS).into_iter().map(|e| e.payload).collect();
        assert_eq!(gone, vec!["short"]);
        let gone: Vec<_> = q.expire(t0 + 5 * MS).into_iter().map(|e| e.payload).collect();
        assert_eq!(gone, vec!["default"]);
        assert_eq!(q.len(), 1);
        assert_eq!(q.next_timeout(), Some(t0 + 50 * MS));
    }

    #[test]
    fn overrides_are_ignored_when_not_allowed() {
        let t0 = Instant::now();
        let mut p = policy(8, &[8], 1000);
        p.levels = vec![LevelPolicy { allow_timeout_override: false, ..level(TimeoutAction::Reject, Some(5), 10) }];
        let mut q = BatchQueue::new(p);
        q.push("a", 1, 0, None, Some(MS), t0).unwrap();
        assert!(q.expire(t0 + 2 * MS).is_empty());
        assert_eq!(q.expire(t0 + 5 * MS).len(), 1);
    }

    #[test]
    fn delay_timeouts_move_behind_the_rest_of_their_level() {
        let t0 = Instant::now();
        let mut p = policy(1, &[1], 0);
        p.levels = vec![level(TimeoutAction::Delay, Some(5), 10), level(TimeoutAction::Reject, None, 10)];
        let mut q = BatchQueue::new(p);
        q.push("old", 1, 0, None, None, t0).unwrap();
        q.push("low", 1, 0, Some(2), None, t0).unwrap();
        q.push("new", 1, 0, None, None, t0 + 4 * MS).unwrap();
        assert!(q.expire(t0 + 6 * MS).is_empty(), "DELAY never rejects");
        assert_eq!(ids(q.poll(t0 + 6 * MS)), vec!["new"]);
        assert_eq!(ids(q.poll(t0 + 6 * MS)), vec!["old"]);
        assert_eq!(ids(q.poll(t0 + 6 * MS)), vec!["low"]);
    }

    fn sized(rows: usize, tokens: usize) -> RequestSize {
        RequestSize { rows, tokens }
    }

    #[test]
    fn a_token_budget_bounds_padded_tokens() {
        let t0 = Instant::now();
        let mut q = BatchQueue::new(QueuePolicy { max_batch_tokens: Some(100), ..policy(16, &[16], 1000) });
        // 2 rows x 10 tokens, then 3 x 20: padded to 20 that is 5 x 20 = 100, at the budget.
        q.push("a", sized(2, 10), 0, None, None, t0).unwrap();
        q.push("b", sized(3, 20), 0, None, None, t0).unwrap();
        // One more row of 5 tokens would make 6 x 20 = 120: the batch closes before it.
        q.push("c", sized(1, 5), 0, None, None, t0).unwrap();
        assert_eq!(ids(q.poll(t0)), vec!["a", "b"]);
        // A long sequence joining short ones pads them all: 4 x 10 = 40, then 5 x 30 = 150.
        q.push("d", sized(3, 10), 0, None, None, t0).unwrap();
        q.push("e", sized(1, 30), 0, None, None, t0).unwrap();
        assert_eq!(ids(q.poll(t0)), vec!["c", "d"]);
        assert!(matches!(q.poll(t0), Poll::WaitUntil(_)));
        assert_eq!(ids(q.poll(t0 + 1000 * MS)), vec!["e"]);
    }

    #[test]
    fn a_request_over_the_budget_still_runs_alone_and_untokenized_requests_ignore_it() {
        let t0 = Instant::now();
        let mut q = BatchQueue::new(QueuePolicy { max_batch_tokens: Some(10), ..policy(8, &[8], 0) });
        q.push("big", sized(2, 50), 0, None, None, t0).unwrap();
        q.push("next", sized(1, 1), 0, None, None, t0).unwrap();
        assert_eq!(ids(q.poll(t0)), vec!["big"]);
        assert_eq!(ids(q.poll(t0)), vec!["next"]);
        for id in ["x", "y", "z"] {
            q.push(id, 3, 0, None, None, t0).unwrap();
        }
        assert_eq!(ids(q.poll(t0)), vec!["x", "y"], "rows still bound the batch; tokens 0 never do");
        assert_eq!(padded_tokens(usize::MAX, 2), usize::MAX);
    }

    #[test]
    fn abandoned_requests_are_removed() {
        let t0 = Instant::now();
        let mut q = BatchQueue::new(policy(8, &[8], 1000));
        for id in ["a", "gone", "b"] {
            q.push(id, 1, 0, None, None, t0).unwrap();
        }
        let removed: Vec<_> = q.remove_abandoned(|p| *p == "gone").into_iter().map(|e| e.payload).collect();
        assert_eq!(removed, vec!["gone"]);
        assert_eq!(ids(q.poll(t0 + 1000 * MS)), vec!["a", "b"]);
    }
}
