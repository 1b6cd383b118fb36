//! The worker's futures run as jobs, each polled again straight from the
//! wake-up of what it waits on (see [`super::entry`] for why not
//! wasm-bindgen-futures' executor): the handlers of the wasm's exports, the
//! tasks left to run after a response, and the timer they may wait on.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Wake, Waker};
use std::time::Duration;

use worker::Context;
use worker::js_sys::{self, Function, Promise};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::web_sys::WorkerGlobalScope;

/// A future still waiting on I/O, and how to settle its promise.
struct Job {
    future: Pin<Box<dyn Future<Output = JsValue>>>,
    resolve: Function,
}

/// The futures waiting on I/O in this isolate (it runs one thread), by id.
#[derive(Default)]
struct Jobs {
    slots: Vec<Option<Job>>,
    /// Ids of empty slots, reused first.
    free: Vec<usize>,
}

thread_local! {
    static JOBS: RefCell<Jobs> = RefCell::new(Jobs::default());
    /// The jobs being polled now (one, or more when a poll wakes another job),
    /// each with whether it was woken meanwhile.
    static POLLING: RefCell<Vec<(usize, bool)>> = const { RefCell::new(Vec::new()) };
}

/// `ctx.waitUntil` of `task`, run as a job. As under `Context::wait_until`,
/// it starts in a microtask, after the handler has returned its response.
pub fn wait_until(ctx: &Context, task: impl Future<Output = ()> + 'static) {
    let task = async move {
        // Resolved already: awaiting it only yields to the microtask queue.
        let _ = JsFuture::from(Promise::resolve(&JsValue::UNDEFINED)).await;
        task.await;
        JsValue::UNDEFINED
    };
    let settled = Promise::resolve(&start(Box::pin(task), || JsValue::UNDEFINED));
    if ctx.as_ref().wait_until(&settled).is_err() {
        worker::console_error!("waitUntil refused a task");
    }
}

/// Waits `wait` (a `setTimeout`). Not `worker::Delay`: it wakes its task
/// before it marks itself due, and a job is polled at once when woken (see
/// [`Wakeup`]), so it would find the delay not due and wait forever.
pub async fn sleep(wait: Duration) {
    let millis = i32::try_from(wait.as_millis()).unwrap_or(i32::MAX);
    let due = Promise::new(&mut |resolve, _reject| {
        let global: WorkerGlobalScope = js_sys::global().unchecked_into();
        let timer = global.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, millis);
        if timer.is_err() {
            // No timer: the wait ends at once rather than never.
            let _ = resolve.call0(&JsValue::UNDEFINED);
        }
    });
    let _ = JsFuture::from(due).await;
}

/// Polls `future` once: its output if that finished it, else a `Promise` of
/// its output, settled by the job it becomes. Should no promise be made,
/// `unsettled` answers in its place and the job is dropped.
pub fn start(
    mut future: Pin<Box<dyn Future<Output = JsValue>>>,
    unsettled: fn() -> JsValue,
) -> JsValue {
    let id = JOBS.with(|jobs| {
        let mut jobs = jobs.borrow_mut();
        jobs.free.pop().unwrap_or_else(|| {
            jobs.slots.push(None);
            jobs.slots.len() - 1
        })
    });
    let waker = Waker::from(Arc::new(Wakeup(id)));
    let (polled, woken) = poll(id, &mut future, &waker);
    if let Poll::Ready(output) = polled {
        JOBS.with(|jobs| jobs.borrow_mut().free.push(id));
        return output;
    }
    let mut resolver = None;
    let promise = Promise::new(&mut |resolve, _reject| resolver = Some(resolve));
    let Some(resolve) = resolver else {
        // `new Promise` runs its executor before it returns: this does not happen.
        JOBS.with(|jobs| jobs.borrow_mut().free.push(id));
        worker::console_error!("no promise resolver");
        return unsettled();
    };
    JOBS.with(|jobs| jobs.borrow_mut().slots[id] = Some(Job { future, resolve }));
    // A wake-up during the first poll found no job to poll yet.
    if woken {
        run(id);
    }
    promise.into()
}

/// Polls job `id`'s future once; also answers whether it was woken meanwhile.
fn poll(
    id: usize,
    future: &mut Pin<Box<dyn Future<Output = JsValue>>>,
    waker: &Waker,
) -> (Poll<JsValue>, bool) {
    POLLING.with(|polling| polling.borrow_mut().push((id, false)));
    let polled = future.as_mut().poll(&mut TaskContext::from_waker(waker));
    let woken = POLLING.with(|polling| polling.borrow_mut().pop().is_some_and(|(_, woken)| woken));
    (polled, woken)
}

/// Polls job `id` until it is done, or pending with no wake-up outstanding.
fn run(id: usize) {
    let taken = JOBS.with(|jobs| jobs.borrow_mut().slots.get_mut(id).and_then(Option::take));
    let Some(mut job) = taken else {
        // Being polled right now (woken from inside a poll), or done and gone.
        POLLING.with(|polling| {
            for (polled, woken) in polling.borrow_mut().iter_mut() {
                *woken |= *polled == id;
            }
        });
        return;
    };
    let waker = Waker::from(Arc::new(Wakeup(id)));
    loop {
        match poll(id, &mut job.future, &waker) {
            (Poll::Ready(output), _) => {
                let _ = job.resolve.call1(&JsValue::UNDEFINED, &output);
                JOBS.with(|jobs| jobs.borrow_mut().free.push(id));
                return;
            }
            (Poll::Pending, true) => continue,
            (Poll::Pending, false) => break,
        }
    }
    JOBS.with(|jobs| jobs.borrow_mut().slots[id] = Some(job));
}

/// Wakes job `id` by polling it at once: wake-ups come from promise callbacks
/// and timers, which already run on a turn of the event loop of their own. So
/// whatever wakes a job must have set what the job will read first. A waker
/// outliving its job may poll the job that reuses its id: a spurious poll,
/// which every future allows.
struct Wakeup(usize);

impl Wake for Wakeup {
    fn wake(self: Arc<Self>) {
        run(self.0);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        run(self.0);
    }
}
