//! The runtime JIT code runs against: the context every script function receives, and the
//! `extern "C"` functions it calls (printing, math, runtime errors, host calls).
//!
//! Nothing here may panic or unwind into JIT frames: every entry point either cannot fail or
//! catches the failure and records it as a pending runtime error.

use crate::host::HostFunc;
use kiln_lang::program::TrapKind;
use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

/// The context passed as the first argument of every script function.
///
/// Its layout is part of Kiln's ABI: lowered code reads the fields at the `OFFSET_*` offsets.
#[repr(C)]
pub struct VmCtx {
    /// Nonzero once a runtime error is pending; checked after every call.
    pub trapped: u8,
    _pad: [u8; 7],
    /// Points at the module's [`Interrupt`], which another thread may change at any time.
    pub interrupt: *const Interrupt,
    /// The largest script call depth allowed (the first call from the host is depth 1).
    pub max_depth: i64,
    /// Bump pointer and end of the array stack, where local arrays live.
    pub array_stack_top: usize,
    pub array_stack_end: usize,
    /// The rest of the runtime's state, which only Rust code touches.
    pub state: *mut RuntimeState,
}

pub const OFFSET_TRAPPED: i32 = 0;
pub const OFFSET_INTERRUPT: i32 = 8;
pub const OFFSET_MAX_DEPTH: i32 = 16;
pub const OFFSET_ARRAY_STACK_TOP: i32 = 24;
pub const OFFSET_ARRAY_STACK_END: i32 = 32;

/// A module's interrupt request and the native stack limit of its running call: the two things
/// JIT code reads that another thread may change.
///
/// Every function entry compares the stack pointer with `stack_limit`, so an interrupt also
/// raises the limit to the top of the address space: the next entry of any function fails its
/// stack check, and the runtime reports it as the interrupt (see [`kiln_rt_trap`]). Recursion
/// is stopped that way at no cost beyond the stack check; loops poll `flag`.
#[repr(C)]
pub struct Interrupt {
    /// Nonzero while an interrupt is requested and not yet answered.
    pub flag: AtomicU8,
    _pad: [u8; 7],
    /// The lowest native stack address a function may start at, or `usize::MAX` while an
    /// interrupt is requested.
    pub stack_limit: AtomicUsize,
}

pub const INTERRUPT_FLAG: i32 = 0;
pub const INTERRUPT_STACK_LIMIT: i32 = 8;

const _: () = {
    assert!(std::mem::offset_of!(Interrupt, flag) == INTERRUPT_FLAG as usize);
    assert!(std::mem::offset_of!(Interrupt, stack_limit) == INTERRUPT_STACK_LIMIT as usize);
};

impl Interrupt {
    pub fn new() -> Interrupt {
        Interrupt {
            flag: AtomicU8::new(0),
            _pad: [0; 7],
            stack_limit: AtomicUsize::new(0),
        }
    }

    /// Asks the running call (or the next one) to stop.
    pub fn request(&self) {
        self.flag.store(1, Ordering::SeqCst);
        self.stack_limit.store(usize::MAX, Ordering::SeqCst);
    }

    /// Sets the stack limit for a call about to start, keeping a pending request's.
    ///
    /// Against a concurrent [`request`](Self::request): if this reads the flag before the
    /// request sets it, the request's store of the limit comes after this one's.
    pub fn start_call(&self, stack_limit: usize) {
        self.stack_limit.store(stack_limit, Ordering::SeqCst);
        if self.flag.load(Ordering::SeqCst) != 0 {
            self.stack_limit.store(usize::MAX, Ordering::SeqCst);
        }
    }
}

impl Default for Interrupt {
    fn default() -> Self {
        Interrupt::new()
    }
}

const _: () = {
    assert!(std::mem::offset_of!(VmCtx, trapped) == OFFSET_TRAPPED as usize);
    assert!(std::mem::offset_of!(VmCtx, interrupt) == OFFSET_INTERRUPT as usize);
    assert!(std::mem::offset_of!(VmCtx, max_depth) == OFFSET_MAX_DEPTH as usize);
    assert!(std::mem::offset_of!(VmCtx, array_stack_top) == OFFSET_ARRAY_STACK_TOP as usize);
    assert!(std::mem::offset_of!(VmCtx, array_stack_end) == OFFSET_ARRAY_STACK_END as usize);
};

impl VmCtx {
    pub fn new(interrupt: *const Interrupt, state: *mut RuntimeState) -> VmCtx {
        VmCtx {
            trapped: 0,
            _pad: [0; 7],
            interrupt,
            max_depth: 0,
            array_stack_top: 0,
            array_stack_end: 0,
            state,
        }
    }
}

/// Where `print` writes.
pub enum Output {
    Stdout(std::io::BufWriter<std::io::Stdout>),
    Capture(Vec<u8>),
}

impl Output {
    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Output::Stdout(w) => w,
            Output::Capture(v) => v,
        }
    }

    pub fn flush(&mut self) {
        // Output errors (a closed pipe) must not become a crash; the script's result stands.
        let _ = self.writer().flush();
    }
}

/// A runtime error raised by JIT code, not yet turned into a user-facing error.
#[derive(Clone, Debug)]
pub struct PendingTrap {
    pub kind: TrapKind,
    /// Where it happened: the failing function's code address and its site index. `None` while
    /// raised by something that does not know (a host function), until the calling script
    /// function fills it in.
    pub location: Option<(usize, u32)>,
    pub message: Option<String>,
}

/// Runtime state only Rust code touches, reached through [`VmCtx::state`].
pub struct RuntimeState {
    pub output: Output,
    pub pending: Option<PendingTrap>,
}

/// The `kind` argument of `kiln_rt_trap` that means "fill in the location of the pending error";
/// the other values are [`trap_code`]s.
pub const TRAP_LOCATE: u32 = 0;

/// The site index meaning "the location is not known here" (an array-stack overflow at function
/// entry); the calling script function fills in its call site.
pub const NO_SITE: u32 = u32::MAX;

/// The number lowered code passes for each trap kind.
pub fn trap_code(kind: TrapKind) -> u32 {
    match kind {
        TrapKind::DivisionByZero => 1,
        TrapKind::IndexOutOfBounds => 2,
        TrapKind::StackOverflow => 3,
        TrapKind::Interrupted => 4,
        TrapKind::HostError => 5,
    }
}

fn trap_kind(code: u32) -> Option<TrapKind> {
    Some(match code {
        1 => TrapKind::DivisionByZero,
        2 => TrapKind::IndexOutOfBounds,
        3 => TrapKind::StackOverflow,
        4 => TrapKind::Interrupted,
        5 => TrapKind::HostError,
        _ => return None,
    })
}

/// Records a runtime error (or, with [`TRAP_LOCATE`], the location of a pending one) raised at
/// site `site` of the function whose code starts at `func`. The first error of a call wins.
///
/// # Safety
/// `vmctx` must be the live context of the running call.
pub unsafe extern "C" fn kiln_rt_trap(vmctx: *mut VmCtx, func: *const u8, site: u32, kind: u32) {
    // SAFETY: JIT code passes the context it was called with, which outlives the call.
    let ctx = unsafe { &mut *vmctx };
    // SAFETY: the state pointer is set up with the context and lives as long as it.
    let state = unsafe { &mut *ctx.state };
    ctx.trapped = 1;
    let location = (site != NO_SITE).then_some((func as usize, site));
    // SAFETY: the module keeps its `Interrupt` alive while its code can run.
    let interrupt = unsafe { &*ctx.interrupt };
    let kind = match trap_kind(kind) {
        // The stack check of a function entry fails for an interrupt request too.
        Some(TrapKind::StackOverflow) if interrupt.flag.load(Ordering::SeqCst) != 0 => {
            Some(TrapKind::Interrupted)
        }
        kind => kind,
    };
    match (&mut state.pending, kind) {
        (Some(p), _) => {
            if p.location.is_none() {
                p.location = location;
            }
        }
        (None, Some(kind)) => {
            if kind == TrapKind::Interrupted {
                // The request is answered; the next call runs normally (and sets its own
                // stack limit).
                interrupt.flag.store(0, Ordering::SeqCst);
            }
            state.pending = Some(PendingTrap {
                kind,
                location,
                message: None,
            });
        }
        (None, None) => {}
    }
}

/// Calls a host function with its arguments as 64-bit patterns; returns its result the same way.
///
/// # Safety
/// `vmctx` must be the live context, `func` a host function of the running module, and `args`
/// must point at as many values as the function has parameters.
pub unsafe extern "C" fn kiln_rt_call_host(
    vmctx: *mut VmCtx,
    func: *const HostFunc,
    args: *const u64,
) -> u64 {
    // SAFETY: the module keeps its host functions alive while its code can run.
    let func = unsafe { &*func };
    let n = func.sig.params.len();
    let args = if n == 0 {
        &[][..]
    } else {
        // SAFETY: lowered code stores exactly `n` arguments at `args`.
        unsafe { std::slice::from_raw_parts(args, n) }
    };
    let message = match catch_unwind(AssertUnwindSafe(|| (func.call)(args))) {
        Ok(Ok(bits)) => return bits,
        Ok(Err(message)) => message,
        Err(panic) => {
            let text = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            format!("host function `{}` panicked: {text}", func.name)
        }
    };
    // SAFETY: as in `kiln_rt_trap`.
    let ctx = unsafe { &mut *vmctx };
    // SAFETY: as in `kiln_rt_trap`.
    let state = unsafe { &mut *ctx.state };
    ctx.trapped = 1;
    if state.pending.is_none() {
        state.pending = Some(PendingTrap {
            kind: TrapKind::HostError,
            location: None,
            message: Some(message),
        });
    }
    0
}

fn with_output(vmctx: *mut VmCtx, f: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) {
    // SAFETY: JIT code passes its live context, whose state outlives the call.
    let state = unsafe { &mut *(*vmctx).state };
    let _ = f(state.output.writer());
}

/// # Safety
/// `vmctx` must be the live context of the running call.
pub unsafe extern "C" fn kiln_rt_print_int(vmctx: *mut VmCtx, v: i64) {
    with_output(vmctx, |w| writeln!(w, "{v}"));
}

/// # Safety
/// `vmctx` must be the live context of the running call.
pub unsafe extern "C" fn kiln_rt_print_float(vmctx: *mut VmCtx, v: f64) {
    with_output(vmctx, |w| writeln!(w, "{v:?}"));
}

/// # Safety
/// `vmctx` must be the live context of the running call.
pub unsafe extern "C" fn kiln_rt_print_bool(vmctx: *mut VmCtx, v: u64) {
    with_output(vmctx, |w| writeln!(w, "{}", v != 0));
}

/// # Safety
/// `vmctx` must be the live context; `ptr..ptr+len` a string literal of the running module.
pub unsafe extern "C" fn kiln_rt_print_str(vmctx: *mut VmCtx, ptr: *const u8, len: u64) {
    // SAFETY: lowered code passes the address and length of a data object it owns.
    let bytes = unsafe { std::slice::from_raw_parts(ptr, len as usize) };
    with_output(vmctx, |w| {
        w.write_all(bytes)?;
        w.write_all(b"\n")
    });
}

/// # Safety
/// `ptr..ptr+bytes` must be writable memory of the array stack or a global.
pub unsafe extern "C" fn kiln_rt_zero(ptr: *mut u8, bytes: u64) {
    // SAFETY: the caller passes an array it owns.
    unsafe { std::ptr::write_bytes(ptr, 0, bytes as usize) };
}

/// Copies one array onto another of the same size; they may be the same array.
///
/// # Safety
/// Both ranges must be arrays of `bytes` bytes.
pub unsafe extern "C" fn kiln_rt_copy(dst: *mut u8, src: *const u8, bytes: u64) {
    // SAFETY: the caller passes two arrays of the same type; `copy` allows overlap.
    unsafe { std::ptr::copy(src, dst, bytes as usize) };
}

extern "C" fn kiln_rt_sin(x: f64) -> f64 {
    x.sin()
}
extern "C" fn kiln_rt_cos(x: f64) -> f64 {
    x.cos()
}
extern "C" fn kiln_rt_tan(x: f64) -> f64 {
    x.tan()
}
extern "C" fn kiln_rt_exp(x: f64) -> f64 {
    x.exp()
}
extern "C" fn kiln_rt_ln(x: f64) -> f64 {
    x.ln()
}
extern "C" fn kiln_rt_pow(x: f64, y: f64) -> f64 {
    x.powf(y)
}
extern "C" fn kiln_rt_fmod(x: f64, y: f64) -> f64 {
    x % y
}
extern "C" fn kiln_rt_floor(x: f64) -> f64 {
    x.floor()
}
extern "C" fn kiln_rt_ceil(x: f64) -> f64 {
    x.ceil()
}
extern "C" fn kiln_rt_trunc(x: f64) -> f64 {
    x.trunc()
}
extern "C" fn kiln_rt_nearest(x: f64) -> f64 {
    x.round_ties_even()
}

/// A runtime function JIT code may call, linked by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RuntimeFn {
    Trap,
    CallHost,
    PrintInt,
    PrintFloat,
    PrintBool,
    PrintStr,
    Zero,
    Copy,
    Sin,
    Cos,
    Tan,
    Exp,
    Ln,
    Pow,
    Fmod,
}

impl RuntimeFn {
    pub const ALL: [RuntimeFn; 15] = [
        RuntimeFn::Trap,
        RuntimeFn::CallHost,
        RuntimeFn::PrintInt,
        RuntimeFn::PrintFloat,
        RuntimeFn::PrintBool,
        RuntimeFn::PrintStr,
        RuntimeFn::Zero,
        RuntimeFn::Copy,
        RuntimeFn::Sin,
        RuntimeFn::Cos,
        RuntimeFn::Tan,
        RuntimeFn::Exp,
        RuntimeFn::Ln,
        RuntimeFn::Pow,
        RuntimeFn::Fmod,
    ];

    /// The runtime function with symbol name `name`.
    pub fn from_symbol(name: &str) -> Option<RuntimeFn> {
        RuntimeFn::ALL.into_iter().find(|f| f.symbol() == name)
    }

    /// The symbol name relocations refer to. Part of Kiln's ABI: renaming one changes what
    /// cached code links against.
    pub fn symbol(self) -> &'static str {
        match self {
            RuntimeFn::Trap => "kiln_rt_trap",
            RuntimeFn::CallHost => "kiln_rt_call_host",
            RuntimeFn::PrintInt => "kiln_rt_print_int",
            RuntimeFn::PrintFloat => "kiln_rt_print_float",
            RuntimeFn::PrintBool => "kiln_rt_print_bool",
            RuntimeFn::PrintStr => "kiln_rt_print_str",
            RuntimeFn::Zero => "kiln_rt_zero",
            RuntimeFn::Copy => "kiln_rt_copy",
            RuntimeFn::Sin => "kiln_rt_sin",
            RuntimeFn::Cos => "kiln_rt_cos",
            RuntimeFn::Tan => "kiln_rt_tan",
            RuntimeFn::Exp => "kiln_rt_exp",
            RuntimeFn::Ln => "kiln_rt_ln",
            RuntimeFn::Pow => "kiln_rt_pow",
            RuntimeFn::Fmod => "kiln_rt_fmod",
        }
    }

    pub fn address(self) -> *const u8 {
        match self {
            RuntimeFn::Trap => kiln_rt_trap as *const u8,
            RuntimeFn::CallHost => kiln_rt_call_host as *const u8,
            RuntimeFn::PrintInt => kiln_rt_print_int as *const u8,
            RuntimeFn::PrintFloat => kiln_rt_print_float as *const u8,
            RuntimeFn::PrintBool => kiln_rt_print_bool as *const u8,
            RuntimeFn::PrintStr => kiln_rt_print_str as *const u8,
            RuntimeFn::Zero => kiln_rt_zero as *const u8,
            RuntimeFn::Copy => kiln_rt_copy as *const u8,
            RuntimeFn::Sin => kiln_rt_sin as *const u8,
            RuntimeFn::Cos => kiln_rt_cos as *const u8,
            RuntimeFn::Tan => kiln_rt_tan as *const u8,
            RuntimeFn::Exp => kiln_rt_exp as *const u8,
            RuntimeFn::Ln => kiln_rt_ln as *const u8,
            RuntimeFn::Pow => kiln_rt_pow as *const u8,
            RuntimeFn::Fmod => kiln_rt_fmod as *const u8,
        }
    }
}

/// Cranelift libcalls (emitted when the CPU lacks an instruction) that Kiln provides itself, so
/// linking never depends on what the process happens to export.
pub fn libcall_address(libcall: cranelift_codegen::ir::LibCall) -> Option<*const u8> {
    use cranelift_codegen::ir::LibCall;
    Some(match libcall {
        LibCall::FloorF64 => kiln_rt_floor as *const u8,
        LibCall::CeilF64 => kiln_rt_ceil as *const u8,
        LibCall::TruncF64 => kiln_rt_trunc as *const u8,
        LibCall::NearestF64 => kiln_rt_nearest as *const u8,
        _ => return None,
    })
}
