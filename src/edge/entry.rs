//! The wasm's `fetch` and `scheduled` exports: each runs its handler
//! ([`super::fetch`], [`super::scheduled`]) without a microtask per step.
//!
//! `#[event(fetch)]` and `#[event(scheduled)]` hand the handler to
//! `future_to_promise`, whose executor polls it in a microtask of its own at
//! the start and again after every promise it awaits: a `queueMicrotask` call
//! into JavaScript and back each time, and a `Promise` even for an answer that
//! needs no I/O. Here the first poll runs at once: a request answered without
//! I/O (a 404, a 405, a bad id, a preflight) returns its `Response` directly.
//! Otherwise the handler becomes a job that is polled again from the callback
//! of the promise it waits on, which already runs in a microtask, and resolves
//! its `Promise` when done. The handlers always have an answer (errors become
//! their JSON responses in [`super::fetch`], a pass logs its own); a panic
//! traps the module, as under `#[event]`, which the JavaScript entry
//! (`entry.js`) notices and reinitialises.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Wake, Waker};

use wasm_bindgen::prelude::wasm_bindgen;
use worker::js_sys::{Function, Promise};
use worker::wasm_bindgen::JsValue;
use worker::web_sys;
use worker::{Context, Env, worker_sys};

/// A handler still waiting on I/O, and how to settle its promise.
struct Job {
    future: Pin<Box<dyn Future<Output = JsValue>>>,
    resolve: Function,
}

/// The handlers waiting on I/O in this isolate (it runs one thread), by id.
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

/// The runtime's `fetch` handler: a `Response`, or a `Promise` of one.
#[wasm_bindgen(js_name = fetch)]
pub fn entry(req: web_sys::Request, env: Env, ctx: worker_sys::Context) -> JsValue {
    let ctx = Context::new(ctx);
    start(
        Box::pin(async move { super::fetch(req, env, ctx).await.into_raw().into() }),
        || super::http::Reply::internal().into_raw().into(),
    )
}

/// The runtime's `scheduled` handler: `undefined`, or a `Promise` of it.
#[wasm_bindgen(js_name = scheduled)]
pub fn scheduled(
    _event: worker_sys::ScheduledEvent,
    env: Env,
    _ctx: worker_sys::ScheduleContext,
) -> JsValue {
    start(
        Box::pin(async move {
            super::scheduled(env).await;
            JsValue::UNDEFINED
        }),
        || JsValue::UNDEFINED,
    )
}

/// Polls `future` once: its output if that finished it, else a `Promise` of
/// its output, settled by the job it becomes. Should no promise be made,
/// `unsettled` answers in its place and the job is dropped.
fn start(
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
/// and timers, which already run on a turn of the event loop of their own. A
/// waker outliving its job may poll the job that reuses its id: a spurious
/// poll, which every future allows.
struct Wakeup(usize);

impl Wake for Wakeup {
    fn wake(self: Arc<Self>) {
        run(self.0);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        run(self.0);
    }
}
