//! [`Sends`]: the requests of a sync pass in flight.
//!
//! A task per request costs a spawn and a cross-thread wake-up per synced
//! item, a large share of a loopback request. With one request at a time
//! (the default), [`InlineSet`] polls it in the pass's own task instead.
//! With several, they stay in tasks of their own, so they keep going while
//! the pass probes connectivity between them. Either way a send that panics
//! (a resolver is user code) ends as [`Panicked`] instead of unwinding the
//! pass.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

/// A future that panicked while polled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Panicked;

/// A future whose panic while polled becomes [`Panicked`], so whoever
/// awaits it keeps what it needs to report the failure (an attempt's
/// ticket).
pub(crate) struct CatchPanic<F> {
    inner: Pin<Box<F>>,
}

impl<F: Future> CatchPanic<F> {
    pub(crate) fn new(inner: F) -> Self {
        Self {
            inner: Box::pin(inner),
        }
    }
}

impl<F: Future> Future for CatchPanic<F> {
    type Output = Result<F::Output, Panicked>;

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = &mut self.inner;
        match catch_unwind(AssertUnwindSafe(|| inner.as_mut().poll(context))) {
            Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(Err(Panicked)),
        }
    }
}

/// Sends in flight: in the pass's task when one at a time, else spawned.
pub(crate) enum Sends<T> {
    Inline(InlineSet<T>),
    Spawned(tokio::task::JoinSet<T>),
}

impl<T: Send + 'static> Sends<T> {
    pub(crate) fn for_concurrency(concurrency: usize) -> Self {
        if concurrency <= 1 {
            Self::Inline(InlineSet::new())
        } else {
            Self::Spawned(tokio::task::JoinSet::new())
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Self::Inline(set) => set.len(),
            Self::Spawned(set) => set.len(),
        }
    }

    pub(crate) fn push(&mut self, future: impl Future<Output = T> + Send + 'static) {
        match self {
            Self::Inline(set) => set.push(future),
            Self::Spawned(set) => drop(set.spawn(future)),
        }
    }

    /// The next result, or `None` when none is in flight.
    pub(crate) async fn next(&mut self) -> Option<Result<T, Panicked>> {
        match self {
            Self::Inline(set) => set.next().await,
            Self::Spawned(set) => set.join_next().await.map(|joined| joined.map_err(|_| Panicked)),
        }
    }
}

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
            let polled = catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(context)));
            if let Ok(Poll::Pending) = polled {
                continue;
            }
            // Done or panicked: dropped here, a panic in its drop contained too.
            let finished = self.running.swap_remove(index);
            let dropped = catch_unwind(AssertUnwindSafe(|| drop(finished)));
            return Poll::Ready(match (polled, dropped) {
                (Ok(Poll::Ready(value)), Ok(())) => Ok(value),
                _ => Err(Panicked),
            });
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_caught_panic_is_a_value() {
        let fine = CatchPanic::new(async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            1
        });
        assert_eq!(fine.await, Ok(1));
        let panicking = CatchPanic::new(async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            #[allow(clippy::panic)] // The panic under test.
            if true {
                panic!("a resolver bug");
            }
            2
        });
        assert_eq!(panicking.await, Err(Panicked));
    }

    #[tokio::test(start_paused = true)]
    async fn spawned_sends_report_results_and_panics_the_same_way() {
        let mut sends = Sends::for_concurrency(2);
        assert!(matches!(sends, Sends::Spawned(_)));
        sends.push(async { 1 });
        sends.push(async {
            #[allow(clippy::panic)] // The panic under test.
            if true {
                panic!("a resolver bug");
            }
            2
        });
        let mut results = Vec::new();
        while let Some(result) = sends.next().await {
            results.push(result);
        }
        results.sort_by_key(|result| result.is_err());
        assert_eq!(results, [Ok(1), Err(Panicked)]);
        assert!(matches!(Sends::<()>::for_concurrency(1), Sends::Inline(_)));
    }

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
