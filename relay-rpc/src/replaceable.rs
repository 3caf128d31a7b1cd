//! Something shared that breaks and is made again: a caller's link to the relay (made again when
//! the connection is lost), a stub's channel (opened again when its listener goes).
//!
//! One task at a time makes the replacement. The others that found the value broken wait for it
//! and share what it made, or the error it failed with, rather than each making one: a hundred
//! calls that find the channel gone open one new channel, not a hundred.

use std::future::Future;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// A value shared by many tasks, replaced by one of them when it breaks.
#[derive(Debug)]
pub(crate) struct Replaceable<T, E> {
    /// Never held across an await.
    slot: Mutex<Slot<T, E>>,
    /// Held by the task making a replacement, so that only one does.
    making: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
struct Slot<T, E> {
    /// The current value; `None` once it was found broken.
    current: Option<T>,
    /// Counts the values made; tells a failure of an old value from one of the current.
    generation: u64,
    /// Counts failed replacements, so that tasks that waited for one get its error.
    failures: u64,
    /// The error the last failed replacement gave.
    last_failure: Option<E>,
    /// Set by [`Replaceable::retire`]: nothing is made again.
    retired: bool,
}

/// What a task saw when it found the value unusable: which value, and how many replacements had
/// failed by then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Seen {
    generation: u64,
    failures: u64,
}

/// The value to use, or why there is none.
#[derive(Debug)]
pub(crate) enum Current<T> {
    /// Use this value, of this generation.
    Usable(u64, T),
    /// The value is broken: replace it ([`Replaceable::replace`]).
    Broken(Seen),
    /// Retired: nothing is made again.
    Retired,
}

/// Why [`Replaceable::replace`] gives no value.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NotReplaced<T, E> {
    /// Making one failed, here or in the task this one waited for.
    Failed(E),
    /// The value was retired, before or while this task made one; the one it made (to be
    /// closed) comes back.
    Retired(Option<T>),
}

impl<T: Clone, E: Clone> Replaceable<T, E> {
    /// Starts with `value`, generation 0.
    pub(crate) fn new(value: T) -> Self {
        let slot = Slot { current: Some(value), generation: 0, failures: 0, last_failure: None, retired: false };
        Self { slot: Mutex::new(slot), making: tokio::sync::Mutex::new(()) }
    }

    fn slot(&self) -> MutexGuard<'_, Slot<T, E>> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current value if there is one and `usable` says it is.
    pub(crate) fn get(&self, usable: impl Fn(&T) -> bool) -> Current<T> {
        let slot = self.slot();
        match &slot.current {
            _ if slot.retired => Current::Retired,
            Some(value) if usable(value) => Current::Usable(slot.generation, value.clone()),
            _ => Current::Broken(Seen { generation: slot.generation, failures: slot.failures }),
        }
    }

    /// The value of `generation` broke: the next [`get`](Self::get) finds it broken. A later
    /// generation is kept.
    pub(crate) fn discard(&self, generation: u64) {
        let mut slot = self.slot();
        if slot.generation == generation {
            slot.current = None;
        }
    }

    /// Retires the value: nothing is made again. Returns the current one, to close.
    pub(crate) fn retire(&self) -> Option<T> {
        let mut slot = self.slot();
        slot.retired = true;
        slot.current.clone()
    }

    /// Whether [`retire`](Self::retire) was called.
    pub(crate) fn is_retired(&self) -> bool {
        self.slot().retired
    }

    /// Replaces the value this task saw broken (`seen`) with one `make` makes, unless another
    /// task did so while this one waited its turn: then that task's value (if `usable`) or its
    /// error (if it failed) is this task's too. Errors that `shared` says are about the attempt
    /// itself (a caller's own deadline) are not handed to the tasks that waited.
    ///
    /// Cancel-safe: a task cancelled while making leaves the value broken for the next.
    pub(crate) async fn replace<F>(
        &self,
        seen: Seen,
        usable: impl Fn(&T) -> bool,
        shared: impl Fn(&E) -> bool,
        make: impl FnOnce() -> F,
    ) -> Result<(u64, T), NotReplaced<T, E>>
    where
        F: Future<Output = Result<T, E>>,
    {
        let _making = self.making.lock().await;
        {
            let slot = self.slot();
            match &slot.current {
                _ if slot.retired => return Err(NotReplaced::Retired(None)),
                // Another task made one while this one waited.
                Some(value) if slot.generation != seen.generation && usable(value) => {
                    return Ok((slot.generation, value.clone()));
                }
                // Another task failed to make one while this one waited.
                _ if slot.failures != seen.failures => {
                    if let Some(e) = &slot.last_failure {
                        return Err(NotReplaced::Failed(e.clone()));
                    }
                }
                _ => {}
            }
        }
        let made = make().await;
        let mut slot = self.slot();
        match made {
            Ok(value) if slot.retired => Err(NotReplaced::Retired(Some(value))),
            Ok(value) => {
                slot.generation += 1;
                slot.current = Some(value.clone());
                Ok((slot.generation, value))
            }
            Err(e) => {
                if shared(&e) {
                    slot.failures += 1;
                    slot.last_failure = Some(e.clone());
                }
                Err(NotReplaced::Failed(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    type Shared = Arc<Replaceable<u32, String>>;

    fn all(_: &u32) -> bool {
        true
    }

    fn seen_broken(r: &Shared) -> Seen {
        match r.get(all) {
            Current::Broken(seen) => seen,
            other => panic!("not broken: {other:?}"),
        }
    }

    #[tokio::test]
    async fn many_tasks_that_find_it_broken_make_one_replacement_and_share_it() {
        let r: Shared = Arc::new(Replaceable::new(1));
        r.discard(0);
        let made = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (r, made) = (r.clone(), made.clone());
                let seen = seen_broken(&r);
                tokio::spawn(async move {
                    r.replace(
                        seen,
                        all,
                        |_| true,
                        || async {
                            made.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            Ok(2)
                        },
                    )
                    .await
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap(), Ok((1, 2)));
        }
        assert_eq!(made.load(Ordering::Relaxed), 1);
        assert!(matches!(r.get(all), Current::Usable(1, 2)));
    }

    #[tokio::test]
    async fn tasks_that_waited_for_a_failed_replacement_get_its_error_and_the_next_tries_again() {
        let r: Shared = Arc::new(Replaceable::new(1));
        r.discard(0);
        let (first, second) = (seen_broken(&r), seen_broken(&r));
        let failed = r.replace(first, all, |_| true, || async { Err("refused".to_owned()) }).await;
        assert_eq!(failed, Err(NotReplaced::Failed("refused".into())));
        let waited = r.replace(second, all, |_| true, || async { Ok(9) }).await;
        assert_eq!(waited, Err(NotReplaced::Failed("refused".into())), "shares the failure it waited for");
        let again = seen_broken(&r);
        assert_eq!(r.replace(again, all, |_| true, || async { Ok(3) }).await, Ok((1, 3)));
    }

    #[tokio::test]
    async fn an_error_about_the_attempt_itself_is_not_shared() {
        let r: Shared = Arc::new(Replaceable::new(1));
        r.discard(0);
        let (first, second) = (seen_broken(&r), seen_broken(&r));
        let own = |e: &String| e != "my deadline";
        let failed = r.replace(first, all, own, || async { Err("my deadline".to_owned()) }).await;
        assert_eq!(failed, Err(NotReplaced::Failed("my deadline".into())));
        assert_eq!(r.replace(second, all, own, || async { Ok(4) }).await, Ok((1, 4)));
    }

    #[tokio::test]
    async fn a_stale_discard_keeps_the_newer_value_and_an_unusable_one_is_replaced() {
        let r: Shared = Arc::new(Replaceable::new(1));
        r.discard(0);
        let seen = seen_broken(&r);
        r.replace(seen, all, |_| true, || async { Ok(2) }).await.unwrap();
        r.discard(0);
        assert!(matches!(r.get(all), Current::Usable(1, 2)), "generation 0 is gone already");
        let seen = match r.get(|v| *v != 2) {
            Current::Broken(seen) => seen,
            other => panic!("{other:?}"),
        };
        assert_eq!(r.replace(seen, |v| *v != 2, |_| true, || async { Ok(5) }).await, Ok((2, 5)));
    }

    #[tokio::test]
    async fn a_retired_value_is_never_made_again_and_one_made_meanwhile_comes_back() {
        let r: Shared = Arc::new(Replaceable::new(1));
        assert_eq!(r.retire(), Some(1));
        assert!(r.is_retired());
        assert!(matches!(r.get(all), Current::Retired));
        let r: Shared = Arc::new(Replaceable::new(1));
        r.discard(0);
        let seen = seen_broken(&r);
        let retiring = r.clone();
        let made = r.replace(
            seen,
            all,
            |_| true,
            || async move {
                retiring.retire();
                Ok(7)
            },
        );
        assert_eq!(made.await, Err(NotReplaced::Retired(Some(7))));
        let seen = Seen { generation: 0, failures: 0 };
        assert_eq!(r.replace(seen, all, |_| true, || async { Ok(8) }).await, Err(NotReplaced::Retired(None)));
    }
}
