//! How a broken plugin call is described: the fault's kind (trap, deadline,
//! out of memory, ...) and detail, classified from wasmtime's error.
//!
//! It does not count faults or decide what a stage does with one: see
//! `loaded.rs` and `stages.rs`.

use crate::stage::FaultKind;

/// A broken call.
#[derive(Debug, Clone)]
pub struct CallFault {
    pub kind: FaultKind,
    pub detail: String,
}

/// Classify a failed call or instantiation; `out_of_memory` is whether the
/// store's memory limiter refused a growth during it.
pub fn classify(e: &wasmtime::Error, out_of_memory: bool) -> CallFault {
    let kind = if out_of_memory {
        FaultKind::OutOfMemory
    } else if matches!(e.downcast_ref::<wasmtime::Trap>(), Some(wasmtime::Trap::Interrupt)) {
        FaultKind::Deadline
    } else {
        FaultKind::Trap
    };
    CallFault { kind, detail: e.root_cause().to_string() }
}
