//! Executable memory for one linked module: one mapping sized up front, written while
//! read-write, and given its final protections exactly once, after every relocation is patched.
//!
//! cranelift-jit's `ArenaMemoryProvider` grows its code segment a page at a time and changes the
//! protection of the whole segment on every growth: hundreds of `mprotect` calls, each over more
//! pages, for a module of a thousand functions. The linker knows every size before the first
//! byte is written, so this provider maps once (keeping PC-relative references between
//! functions in range, as one arena does) and protects once.

use cranelift_jit::{BranchProtection, JITMemoryKind, JITMemoryProvider};
use cranelift_module::{ModuleError, ModuleResult};
use std::io;

/// Bytes each kind of memory needs, upper bounds including alignment padding.
#[derive(Clone, Copy, Debug, Default)]
pub struct MemorySizes {
    pub executable: usize,
    pub read_only: usize,
    pub writable: usize,
}

struct Part {
    start: usize,
    len: usize,
    used: usize,
}

impl Part {
    fn allocate(&mut self, size: usize, align: usize) -> Option<usize> {
        let offset = self.used.checked_next_multiple_of(align)?;
        let end = offset.checked_add(size)?;
        (end <= self.len).then(|| {
            self.used = end;
            self.start + offset
        })
    }
}

pub struct CodeMemory {
    allocation: Option<region::Allocation>,
    executable: Part,
    read_only: Part,
    writable: Part,
    finalized: bool,
}

// SAFETY: the memory is owned by this value alone; it holds no thread-bound state.
unsafe impl Send for CodeMemory {}

impl CodeMemory {
    pub fn new(sizes: MemorySizes) -> io::Result<CodeMemory> {
        let page = region::page::size();
        let round = |n: usize| n.next_multiple_of(page);
        let (x, r, w) = (
            round(sizes.executable),
            round(sizes.read_only),
            round(sizes.writable),
        );
        let total = (x + r + w).max(page);
        let allocation = region::alloc(total, region::Protection::READ_WRITE)
            .map_err(|e| io::Error::other(format!("cannot map {total} bytes for code: {e}")))?;
        Ok(CodeMemory {
            allocation: Some(allocation),
            executable: Part {
                start: 0,
                len: x,
                used: 0,
            },
            read_only: Part {
                start: x,
                len: r,
                used: 0,
            },
            writable: Part {
                start: x + r,
                len: w,
                used: 0,
            },
            finalized: false,
        })
    }

    fn base(&self) -> Option<*mut u8> {
        self.allocation
            .as_ref()
            .map(|a| a.as_ptr::<u8>().cast_mut())
    }
}

impl JITMemoryProvider for CodeMemory {
    fn allocate(&mut self, size: usize, align: u64, kind: JITMemoryKind) -> io::Result<*mut u8> {
        let base = self
            .base()
            .ok_or_else(|| io::Error::other("code memory already freed"))?;
        let part = match kind {
            JITMemoryKind::Executable => &mut self.executable,
            JITMemoryKind::ReadOnly => &mut self.read_only,
            JITMemoryKind::Writable => &mut self.writable,
        };
        let align = usize::try_from(align).unwrap_or(usize::MAX).max(1);
        if self.finalized || !align.is_power_of_two() {
            return Err(io::Error::other("invalid allocation of code memory"));
        }
        let offset = part
            .allocate(size, align)
            .ok_or_else(|| io::Error::other("code memory sized too small for the module"))?;
        // SAFETY: `offset + size` lies within the allocation (checked by `Part::allocate`).
        Ok(unsafe { base.add(offset) })
    }

    unsafe fn free_memory(&mut self) {
        self.allocation = None;
    }

    fn finalize(&mut self, _branch_protection: BranchProtection) -> ModuleResult<()> {
        let Some(base) = self.base() else {
            return Ok(());
        };
        if self.finalized {
            return Ok(());
        }
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            ModuleError::Backend(anyhow::Error::msg(format!("cannot make {what}: {e}")))
        };
        let x = &self.executable;
        if x.len > 0 {
            // SAFETY: the range is this allocation's executable part, fully written by now.
            unsafe {
                wasmtime_jit_icache_coherence::clear_cache(base.add(x.start).cast(), x.len)
                    .map_err(|e| fail("code coherent", &e))?;
                region::protect(base.add(x.start), x.len, region::Protection::READ_EXECUTE)
                    .map_err(|e| fail("code executable", &e))?;
            }
        }
        let r = &self.read_only;
        if r.len > 0 {
            // SAFETY: the range is this allocation's read-only part.
            unsafe {
                region::protect(base.add(r.start), r.len, region::Protection::READ)
                    .map_err(|e| fail("data read-only", &e))?;
            }
        }
        wasmtime_jit_icache_coherence::pipeline_flush_mt()
            .map_err(|e| fail("code visible to all threads", &e))?;
        self.finalized = true;
        Ok(())
    }
}

impl Drop for CodeMemory {
    fn drop(&mut self) {
        // Finalized code may still be running somewhere only the owner knows about: it must be
        // freed explicitly with `JITModule::free_memory`. Unfinalized memory never ran.
        if self.finalized {
            std::mem::forget(self.allocation.take());
        }
    }
}
