//! Parked client sockets, held outside any task.
//!
//! Most client sockets sit parked for most of their life, and a tokio task costs 256 B
//! whatever it holds. So a socket's [`Task`] ends when its socket parks: the socket waits in
//! a [`Slot`], which is itself the waker its connection and its route's queue keep. Waking
//! the slot spawns the socket a task again; the task polls what woke it, runs from there, and
//! parks the socket again (in a new slot) once it idles or if nothing had happened after all.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use parking_lot::Mutex;

/// A step of a socket's life, boxed: it exists only while it runs. It ends with the socket
/// parked (`Some`) or ended (`None`).
pub type Step<S> = Pin<Box<dyn Future<Output = Option<Box<S>>> + Send>>;

/// A socket that can wait parked outside any task.
pub trait Park: Send + Sized + 'static {
    /// What woke it.
    type Wake: Send;
    /// What it holds for as long as it lives, parked or not (its place under a cap).
    type Hold: Send + 'static;

    /// Polls for what wakes it. `Pending` must leave `cx`'s waker with whatever will wake it.
    fn poll_parked(&mut self, cx: &mut Context<'_>) -> Poll<Self::Wake>;

    /// Runs it from what woke it.
    fn resume(self: Box<Self>, wake: Self::Wake) -> Step<Self>;
}

/// A socket's task while it has one.
pub struct Task<S: Park> {
    hold: Option<S::Hold>,
    state: State<S>,
}

enum State<S: Park> {
    Running(Step<S>),
    /// To be parked at the next poll (see [`Task::poll`]).
    ToPark(Box<S>),
    Ended,
}

impl<S: Park> Task<S> {
    /// A task that runs `step` (and what follows it), holding `hold` until the socket ends.
    pub fn new(hold: S::Hold, step: Step<S>) -> Self {
        Self {
            hold: Some(hold),
            state: State::Running(step),
        }
    }
}

// Nothing in a task is pinned in place: its step is boxed, the rest moves freely.
impl<S: Park> Unpin for Task<S> {}

impl<S: Park> Future for Task<S> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        loop {
            match std::mem::replace(&mut this.state, State::Ended) {
                State::Running(mut step) => match step.as_mut().poll(cx) {
                    Poll::Pending => {
                        this.state = State::Running(step);
                        return Poll::Pending;
                    }
                    Poll::Ready(Some(socket)) => this.state = State::ToPark(socket),
                    Poll::Ready(None) => return Poll::Ready(()),
                },
                State::ToPark(socket) => match park(socket, this.hold.take()) {
                    Parked::Away => return Poll::Ready(()),
                    Parked::Woken(socket, wake, hold) => {
                        this.hold = hold;
                        this.state = State::Running(socket.resume(wake));
                    }
                    // Woken while being parked: likely tokio's budget for this poll ran out
                    // (a resource then wakes at once and says `Pending`), so the task yields
                    // and parks it at its next poll.
                    Parked::Yield(socket, hold) => {
                        this.hold = hold;
                        this.state = State::ToPark(socket);
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                },
                State::Ended => return Poll::Ready(()),
            }
        }
    }
}

/// How [`park`] left a socket.
enum Parked<S: Park> {
    /// In its slot; the task can end.
    Away,
    /// Something had already happened.
    Woken(Box<S>, S::Wake, Option<S::Hold>),
    /// Woken while it was being parked, by nothing it can see yet.
    Yield(Box<S>, Option<S::Hold>),
}

/// Parks `socket` in a new slot unless something wakes it already.
fn park<S: Park>(mut socket: Box<S>, hold: Option<S::Hold>) -> Parked<S> {
    let slot = Arc::new(Slot {
        state: Mutex::new(SlotState::Empty),
        // Parking happens in a task's poll, so there is a runtime; the slot keeps it for a
        // wake from any thread.
        runtime: tokio::runtime::Handle::current(),
    });
    let waker = Waker::from(slot.clone());
    let mut cx = Context::from_waker(&waker);
    // Polled without the slot's lock held: a resource may wake the waker during the poll.
    if let Poll::Ready(wake) = socket.poll_parked(&mut cx) {
        return Parked::Woken(socket, wake, hold);
    }
    let mut state = slot.state.lock();
    match *state {
        SlotState::Empty => {
            *state = SlotState::Held(socket, hold);
            Parked::Away
        }
        SlotState::WokenEarly | SlotState::Held(..) => {
            *state = SlotState::Empty;
            Parked::Yield(socket, hold)
        }
    }
}

/// Where a parked socket waits; the waker its resources keep.
struct Slot<S: Park> {
    state: Mutex<SlotState<S>>,
    runtime: tokio::runtime::Handle,
}

enum SlotState<S: Park> {
    /// Being parked, or already taken up again.
    Empty,
    /// Woken while being parked: whoever parks it must not leave it here.
    WokenEarly,
    Held(Box<S>, Option<S::Hold>),
}

impl<S: Park> Wake for Slot<S> {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let taken = {
            let mut state = self.state.lock();
            match std::mem::replace(&mut *state, SlotState::Empty) {
                SlotState::Held(socket, hold) => Some((socket, hold)),
                SlotState::Empty | SlotState::WokenEarly => {
                    *state = SlotState::WokenEarly;
                    None
                }
            }
        };
        // A runtime shutting down drops the task, and with it the socket.
        if let Some((socket, hold)) = taken {
            self.runtime.spawn(Task {
                hold,
                state: State::ToPark(socket),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// What the fake socket waits on: a count of events and the waker to tell.
    #[derive(Default)]
    struct Source {
        events: Mutex<(usize, Option<Waker>)>,
        /// Wakes the waker once, at once, inside the next poll (as a resource does when the
        /// task's budget is spent).
        wake_inside_poll: std::sync::atomic::AtomicBool,
    }

    impl Source {
        fn fire(&self) {
            let waker = {
                let mut events = self.events.lock();
                events.0 += 1;
                events.1.take()
            };
            if let Some(w) = waker {
                w.wake();
            }
        }
    }

    struct Fake {
        source: Arc<Source>,
        /// Events handled, and resumptions, for the test to read.
        handled: Arc<AtomicUsize>,
        resumed: Arc<AtomicUsize>,
    }

    impl Park for Fake {
        type Wake = usize;
        type Hold = Arc<()>;

        fn poll_parked(&mut self, cx: &mut Context<'_>) -> Poll<usize> {
            let mut events = self.source.events.lock();
            if events.0 > 0 {
                return Poll::Ready(std::mem::take(&mut events.0));
            }
            events.1 = Some(cx.waker().clone());
            if self.source.wake_inside_poll.swap(false, Ordering::SeqCst) {
                cx.waker().wake_by_ref();
            }
            Poll::Pending
        }

        fn resume(self: Box<Self>, wake: usize) -> Step<Self> {
            Box::pin(async move {
                self.resumed.fetch_add(1, Ordering::SeqCst);
                self.handled.fetch_add(wake, Ordering::SeqCst);
                tokio::task::yield_now().await;
                Some(self)
            })
        }
    }

    fn fake() -> (Box<Fake>, Arc<Source>, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        let source = Arc::new(Source::default());
        let handled = Arc::new(AtomicUsize::new(0));
        let resumed = Arc::new(AtomicUsize::new(0));
        let f = Box::new(Fake {
            source: source.clone(),
            handled: handled.clone(),
            resumed: resumed.clone(),
        });
        (f, source, handled, resumed)
    }

    async fn until(what: &str, mut ok: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !ok() {
            assert!(tokio::time::Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn alive() -> usize {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_parked_socket_has_no_task_and_every_event_takes_it_up() {
        let (socket, source, handled, resumed) = fake();
        let hold = Arc::new(());
        let start: Step<Fake> = Box::pin(async move { Some(socket) });
        tokio::spawn(Task::new(hold.clone(), start));
        until("parks without a task", || alive() == 0).await;
        assert_eq!(
            Arc::strong_count(&hold),
            2,
            "the slot holds the socket's hold"
        );

        for n in 1..=50 {
            source.fire();
            until("the event is handled", || {
                handled.load(Ordering::SeqCst) == n
            })
            .await;
            until("parks again without a task", || alive() == 0).await;
        }
        assert!(resumed.load(Ordering::SeqCst) <= 50);
        assert_eq!(Arc::strong_count(&hold), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wake_while_parking_is_not_lost() {
        let (socket, source, handled, _) = fake();
        source.wake_inside_poll.store(true, Ordering::SeqCst);
        let start: Step<Fake> = Box::pin(async move { Some(socket) });
        tokio::spawn(Task::new(Arc::new(()), start));
        until("parks without a task", || alive() == 0).await;
        source.fire();
        until("the event is handled", || {
            handled.load(Ordering::SeqCst) == 1
        })
        .await;

        // Events racing the park from another thread are each handled.
        let racing = {
            let source = source.clone();
            std::thread::spawn(move || {
                for _ in 0..200 {
                    source.fire();
                    std::thread::yield_now();
                }
            })
        };
        racing.join().unwrap();
        until("every racing event is handled", || {
            handled.load(Ordering::SeqCst) == 201
        })
        .await;
        until("parks without a task", || alive() == 0).await;
    }

    #[tokio::test]
    async fn a_socket_that_ends_drops_what_it_holds() {
        struct Ends;
        impl Park for Ends {
            type Wake = ();
            type Hold = Arc<()>;
            fn poll_parked(&mut self, _: &mut Context<'_>) -> Poll<()> {
                Poll::Ready(())
            }
            fn resume(self: Box<Self>, (): ()) -> Step<Self> {
                Box::pin(async { None })
            }
        }
        let hold = Arc::new(());
        let start: Step<Ends> = Box::pin(async { Some(Box::new(Ends)) });
        tokio::spawn(Task::new(hold.clone(), start)).await.unwrap();
        assert_eq!(Arc::strong_count(&hold), 1);
    }
}
