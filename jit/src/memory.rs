//! Executable memory for one linked module: one mapping sized up front, written while
//! read-write, and given its final protections exactly once, after every relocation is patched.
//!
//! The linker knows every size before the first byte is written, so code and data are one
//! mapping (which keeps PC-relative references between them in range) and protecting it is two
//! `mprotect` calls, however many functions the module has.

use std::io;

/// Code followed by read-only data, in one mapping.
///
/// Dropping it unmaps the memory: its owner keeps it alive while any of its code may run.
pub struct CodeMemory {
    allocation: region::Allocation,
    /// Bytes of the executable part (page-rounded); the read-only part follows it.
    code_len: usize,
    data_len: usize,
    finalized: bool,
}

// SAFETY: the memory is owned by this value alone; it holds no thread-bound state.
unsafe impl Send for CodeMemory {}
// SAFETY: after `finalize` the memory is never written again; before it, writing needs `&mut`.
unsafe impl Sync for CodeMemory {}

impl CodeMemory {
    /// Maps `code` bytes for code followed by `data` bytes for read-only data, read-write.
    pub fn new(code: usize, data: usize) -> io::Result<CodeMemory> {
        let page = region::page::size();
        let code_len = code.next_multiple_of(page);
        let data_len = data.next_multiple_of(page);
        let total = (code_len + data_len).max(page);
        let allocation = region::alloc(total, region::Protection::READ_WRITE)
            .map_err(|e| io::Error::other(format!("cannot map {total} bytes for code: {e}")))?;
        Ok(CodeMemory {
            allocation,
            code_len,
            data_len,
            finalized: false,
        })
    }

    /// The address of the first byte; data starts at [`CodeMemory::data_offset`].
    pub fn base(&self) -> *const u8 {
        self.allocation.as_ptr()
    }

    pub fn data_offset(&self) -> usize {
        self.code_len
    }

    /// The whole mapping, to write code and data into before [`CodeMemory::finalize`].
    pub fn bytes_mut(&mut self) -> io::Result<&mut [u8]> {
        if self.finalized {
            return Err(io::Error::other("code memory is already executable"));
        }
        let len = self.code_len + self.data_len;
        // SAFETY: the allocation is at least `len` bytes, read-write until finalized, and
        // borrowed mutably through `self`.
        Ok(unsafe { std::slice::from_raw_parts_mut(self.allocation.as_mut_ptr(), len) })
    }

    /// Makes the code executable (and the instruction cache coherent with what was written)
    /// and the data read-only. Nothing can be written afterwards.
    pub fn finalize(&mut self) -> io::Result<()> {
        if self.finalized {
            return Ok(());
        }
        let base = self.allocation.as_mut_ptr::<u8>();
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            io::Error::other(format!("cannot make {what}: {e}"))
        };
        if self.code_len > 0 {
            // SAFETY: the range is this allocation's code part, fully written by now.
            unsafe {
                wasmtime_jit_icache_coherence::clear_cache(base.cast(), self.code_len)
                    .map_err(|e| fail("code coherent", &e))?;
                region::protect(base, self.code_len, region::Protection::READ_EXECUTE)
                    .map_err(|e| fail("code executable", &e))?;
            }
        }
        if self.data_len > 0 {
            // SAFETY: the range is this allocation's data part.
            unsafe {
                region::protect(
                    base.add(self.code_len),
                    self.data_len,
                    region::Protection::READ,
                )
                .map_err(|e| fail("data read-only", &e))?;
            }
        }
        wasmtime_jit_icache_coherence::pipeline_flush_mt()
            .map_err(|e| fail("code visible to all threads", &e))?;
        self.finalized = true;
        Ok(())
    }
}
