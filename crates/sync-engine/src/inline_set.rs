//! [`InlineSet`]: a few futures run concurrently inside the calling task.
//!
//! A sync pass sends up to `concurrency` items at once. A task per item
//! costs a spawn and a cross-thread wake-up per synced item, a large share
//! of a loopback request; polling the sends in the pass's own task costs
//! neither. Each poll is guarded, so a send that panics (a resolver is user
//! code) ends as [`Panicked`] instead of unwinding the pass, as it would in
//! a task of its own.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

/// A future that panicked while polled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Panicked;

type Running<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Futures polled in the caller's task; results come in completion order.
pub(crate) struct InlineSet<T> {
    running: Vec<Running<T>>,
}

impl<T> InlineSet<T> {
    pub(crate) fn new() -> Self {
        Self { running: Vec::new() }
    }

    pub(crate) fn len(&self) -> usize {
        self.running.len()
    }

    pub(crate) fn push(&mut self, future: impl Future<Output = T> + Send + 'static) {
        self.running.push(Box::pin(future));
    }

    /// The next result, or `None` when the set is empty.
    pub(crate) async fn next(&mut self) -> Option<Result<T, Panicked>> {
        if self.running.is_empty() {
            return None;
        }
        Some(std::future::poll_fn(|context| self.poll_any(context)).await)
    }

    /// Polls every future once: they share the task's waker, so a wake-up
    /// from any gets them all looked at (the sets are small).
    fn poll_any(&mut self, context: &mut Context<'_>) -> Poll<Result<T, Panicked>> {
        for index in 0..self.running.len() {
            let future = &mut self.running[index];
            match catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(context))) {
                Ok(Poll::Pending) => {}
                Ok(Poll::Ready(value)) => {
                    drop(self.running.swap_remove(index));
                    return Poll::Ready(Ok(value));
                }
                Err(_) => {
                    drop(self.running.swap_remove(index));
                    return Poll::Ready(Err(Panicked));
                }
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn results_come_in_completion_order_and_a_panic_is_contained() {
        let mut set = InlineSet::new();
        for (value, millis) in [(1, 30u64), (2, 10), (3, 20)] {
            set.push(async move {
                tokio::time::sleep(Duration::from_millis(millis)).await;
                value
            });
        }
        set.push(async {
            tokio::time::sleep(Duration::from_millis(15)).await;
            #[allow(clippy::panic)] // The panic under test.
            if true {
                panic!("a resolver bug");
            }
            4
        });
        assert_eq!(set.len(), 4);
        let mut results = Vec::new();
        while let Some(result) = set.next().await {
            results.push(result);
        }
        assert_eq!(results, [Ok(2), Err(Panicked), Ok(3), Ok(1)]);
    }
}
