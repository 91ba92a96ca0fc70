//! Where a plugin's calls get their instances: a new Store and instance made
//! from the plugin's `InstancePre`, with its memory limit and deadline.
//!
//! Fresh-instance plugins keep a few *spares*: instances made ahead of their
//! call on a background thread, each used by exactly one call and then
//! retired, so no call ever sees state another call left. Retired stores are
//! dropped on that thread too (dropping a store resets the pages its
//! instance dirtied). A call then pays for neither the instantiation nor the
//! reset. When no spare is ready (a burst of calls, or the thread behind),
//! the call instantiates inline, as it would with no spares.
//!
//! Warm plugins keep idle instances that served earlier calls, reused until
//! one faults.
//!
//! It does not classify faults (see `fault.rs`) or keep statistics (see
//! `loaded.rs`).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use wasmtime::component::{Instance, InstancePre};
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::runtime::in_tokio;

use super::bindings::{CallWatch, HostState, PluginMeta};
use super::fault::{CallFault, classify};
use crate::stage::FaultKind;

/// Arm `store`'s deadline `deadline` from now: the epoch callback checks it
/// at every tick. Starts a new call's watch (ticks run, load seen, lines
/// logged).
fn arm(store: &mut Store<HostState>, deadline: Duration) {
    let data = store.data_mut();
    data.deadline = Instant::now() + deadline;
    let in_flight = data.meta.host_in_flight.load(Ordering::Relaxed);
    data.watch = CallWatch { peak_in_flight: in_flight, ..CallWatch::default() };
    store.set_epoch_deadline(1);
}

/// An instance and the Store it lives in.
pub struct Live {
    pub store: Store<HostState>,
    pub instance: Instance,
}

/// One plugin version's instances.
pub struct InstancePool {
    pre: InstancePre<HostState>,
    meta: Arc<PluginMeta>,
    /// How long a call may run.
    deadline: Duration,
    warm: bool,
    /// Warm: idle instances that served earlier calls. Fresh: spares that
    /// served none.
    idle: Mutex<Vec<Live>>,
    /// Most idle instances kept (warm), or spares made ahead (fresh).
    keep: usize,
    /// A refill is queued or running.
    refilling: AtomicBool,
    /// Disabled or unloaded: make and keep no more.
    closed: AtomicBool,
}

impl InstancePool {
    pub fn new(pre: InstancePre<HostState>, meta: Arc<PluginMeta>, warm: bool) -> InstancePool {
        let keep = if warm { meta.manifest.warm_pool.max(1) } else { meta.manifest.spares };
        InstancePool {
            pre,
            deadline: meta.manifest.deadline,
            warm,
            idle: Mutex::new(Vec::new()),
            keep,
            refilling: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            meta,
        }
    }

    /// Whether calls reuse warm instances.
    pub fn warm(&self) -> bool {
        self.warm
    }

    /// Idle (warm) or spare (fresh) instances ready now.
    pub fn ready(&self) -> usize {
        self.idle.lock().map_or(0, |v| v.len())
    }

    /// A new instance, made within `deadline`.
    pub async fn instantiate(&self, deadline: Duration) -> Result<Live, CallFault> {
        let mut store = Store::new(self.pre.engine(), HostState::new(self.meta.clone()));
        store.limiter(|s| &mut s.limiter);
        // At every epoch tick the guest yields to the async worker, so a
        // long call never holds a worker thread, until its deadline passes.
        store.epoch_deadline_callback(|mut ctx| {
            let data = ctx.data_mut();
            let in_flight = data.meta.host_in_flight.load(Ordering::Relaxed);
            data.watch.tick(in_flight);
            if Instant::now() >= data.deadline {
                Err(wasmtime::Trap::Interrupt.into())
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        arm(&mut store, deadline);
        match self.pre.instantiate_async(&mut store).await {
            Ok(instance) => Ok(Live { store, instance }),
            Err(e) => {
                let mut fault = classify(&e, store.data().limiter.hit);
                if fault.kind == FaultKind::Trap && e.downcast_ref::<wasmtime::Trap>().is_none() {
                    fault.kind = FaultKind::Instantiate;
                }
                Err(fault)
            }
        }
    }

    /// An instance for one call, its deadline armed: an idle one if there is
    /// one, else a new one (the spare's replacement is queued at checkin).
    /// `on_spare_miss` runs when a fresh plugin that keeps spares had none
    /// ready, before the inline instantiation.
    pub async fn checkout(self: &Arc<Self>, on_spare_miss: impl FnOnce()) -> Result<Live, CallFault> {
        let idle = self.idle.lock().ok().and_then(|mut v| v.pop());
        let mut live = match idle {
            Some(live) => live,
            None => {
                if !self.warm && self.keep > 0 {
                    on_spare_miss();
                }
                self.instantiate(self.deadline).await?
            }
        };
        arm(&mut live.store, self.deadline);
        live.store.data_mut().limiter.hit = false;
        Ok(live)
    }

    /// Give back an instance after its call. A warm plugin keeps it for
    /// the next call if the call went well; otherwise (and always for fresh
    /// plugins) it is retired, and a fresh plugin's spares are remade, both
    /// on the background thread (one hand-off per call).
    pub fn checkin(self: &Arc<Self>, live: Live, ok: bool) {
        if ok
            && self.warm
            && !self.closed.load(Ordering::Relaxed)
            && let Ok(mut idle) = self.idle.lock()
            && idle.len() < self.keep
        {
            idle.push(live);
            return;
        }
        let refill = (!self.warm && self.claim_refill()).then(|| Arc::downgrade(self));
        if let Err(refill) = retire(live, refill) {
            self.refilling.store(false, Ordering::Release);
            drop(refill);
        }
    }

    /// Keep a new, unused instance (the trial instance made at load): as
    /// the first warm instance, or the first spare.
    pub fn keep_unused(&self, live: Live) {
        if self.keep > 0
            && let Ok(mut idle) = self.idle.lock()
        {
            idle.push(live);
            return;
        }
        let _ = retire(live, None);
    }

    /// Make and keep no more instances; drop the idle ones.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        let idle = self.idle.lock().map(|mut v| std::mem::take(&mut *v)).unwrap_or_default();
        for live in idle {
            let _ = retire(live, None);
        }
    }

    /// Make and keep instances again (a disabled plugin re-enabled by a
    /// successful probe).
    pub fn reopen(&self) {
        self.closed.store(false, Ordering::Relaxed);
    }

    /// Whether the caller should queue a refill of the spares: there are
    /// spares to keep and no refill is queued or running.
    fn claim_refill(&self) -> bool {
        self.keep > 0 && !self.closed.load(Ordering::Relaxed) && !self.refilling.swap(true, Ordering::AcqRel)
    }

    /// Make spares until there are `keep` (on the background thread).
    fn refill(&self) {
        loop {
            while !self.closed.load(Ordering::Relaxed) && self.idle.lock().is_ok_and(|v| v.len() < self.keep) {
                // The deadline is re-armed at checkout; this one bounds the
                // instantiation itself.
                match in_tokio(self.instantiate(self.deadline)) {
                    Ok(live) => match self.idle.lock() {
                        Ok(mut idle) => idle.push(live),
                        Err(_) => return,
                    },
                    // The next call instantiates inline and reports it.
                    Err(_) => break,
                }
            }
            self.refilling.store(false, Ordering::Release);
            // A spare taken after the loop's last look, before the flag
            // dropped, found a refill still running: look again.
            let short = self.idle.lock().is_ok_and(|v| v.len() < self.keep);
            if !short || self.closed.load(Ordering::Relaxed) || self.refilling.swap(true, Ordering::AcqRel) {
                return;
            }
        }
    }
}

impl Drop for InstancePool {
    fn drop(&mut self) {
        self.close();
    }
}

/// A used store to drop, and the plugin whose spares to remake, if any.
struct Job {
    retired: Option<Live>,
    refill: Option<Weak<InstancePool>>,
}

/// Room in the background thread's queue: one refill per plugin at most,
/// and the retired stores below.
const QUEUE_DEPTH: usize = 1024;

/// Most retired stores waiting for the background thread; past this the
/// caller drops its own (each holds an instance slot of the pool until
/// dropped, and a backlog means the thread cannot keep up anyway).
const MAX_RETIRING: usize = 8;

static RETIRING: AtomicUsize = AtomicUsize::new(0);

/// The background thread's queue, started on first use; `None` if the
/// thread could not start.
fn background() -> Option<&'static SyncSender<Job>> {
    static QUEUE: OnceLock<Option<SyncSender<Job>>> = OnceLock::new();
    QUEUE
        .get_or_init(|| {
            let (tx, rx) = sync_channel::<Job>(QUEUE_DEPTH);
            let spawned = std::thread::Builder::new().name("sluice-plugin-instances".into()).spawn(move || {
                for Job { retired, refill } in rx {
                    if let Some(live) = retired {
                        drop(live);
                        RETIRING.fetch_sub(1, Ordering::Relaxed);
                    }
                    if let Some(instances) = refill.and_then(|w| w.upgrade()) {
                        instances.refill();
                    }
                }
            });
            match spawned {
                Ok(_) => Some(tx),
                Err(e) => {
                    tracing::warn!(error = %e, "no background plugin instance thread; instances are made inline");
                    None
                }
            }
        })
        .as_ref()
}

/// Drop a used (or faulted) instance's store on the background thread, or
/// here when too many wait there, and queue `refill` there; gives `refill`
/// back when it cannot be queued.
fn retire(live: Live, refill: Option<Weak<InstancePool>>) -> Result<(), Option<Weak<InstancePool>>> {
    let Some(queue) = background() else {
        drop(live);
        return Err(refill);
    };
    let retired = if RETIRING.fetch_add(1, Ordering::Relaxed) < MAX_RETIRING {
        Some(live)
    } else {
        RETIRING.fetch_sub(1, Ordering::Relaxed);
        drop(live);
        None
    };
    let counted = retired.is_some();
    if retired.is_none() && refill.is_none() {
        return Ok(());
    }
    match queue.try_send(Job { retired, refill }) {
        Ok(()) => Ok(()),
        Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => {
            if counted {
                RETIRING.fetch_sub(1, Ordering::Relaxed);
            }
            drop(job.retired);
            Err(job.refill)
        }
    }
}
