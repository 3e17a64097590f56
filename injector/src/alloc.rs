//! The process's allocator: the system's, with freed small blocks kept for reuse.
//!
//! The static binary's libc is musl, whose allocator hands a group of blocks back to the
//! kernel as soon as the last block in it is freed. Every Key Vault request allocates and frees
//! a few kilobytes (request, h2 stream, headers, body), so each one cost about two `mmap` and
//! `munmap` pairs and the page faults of fresh pages: about a third of the CPU time an extra
//! placeholder cost. Here a freed block of up to [`MAX_CACHED`] bytes goes onto a free list of
//! its power-of-two size class, and the next allocation of that class takes it back; each list
//! holds at most [`CLASS_CAP`] bytes (the rest goes back to the system), so a long-lived
//! supervisor keeps a bounded amount. Larger or over-aligned blocks go straight to the system.
//!
//! Every freed block is wiped first, whichever way it goes: response bodies, headers and
//! tokens pass through buffers that are not `Zeroizing`, and a block kept here (or by musl,
//! which does not clear what it keeps) would otherwise hold them until reused.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr;
use std::sync::Mutex;

/// Smallest class: 16 bytes (every block holds a free-list link and the alignment the system
/// guarantees).
const MIN_SHIFT: u32 = 4;
/// Largest class: 32 KiB.
const MAX_SHIFT: u32 = 15;
/// Largest block size kept for reuse.
pub const MAX_CACHED: usize = 1 << MAX_SHIFT;
/// Bytes each class may keep on its free list.
pub const CLASS_CAP: usize = 1 << 20;
const CLASSES: usize = (MAX_SHIFT - MIN_SHIFT + 1) as usize;
/// Alignment of every class's blocks (what a 16-byte system allocation guarantees).
const ALIGN: usize = 16;

/// One class's free list, threaded through the freed blocks themselves.
struct FreeList {
    head: *mut u8,
    bytes: usize,
}

// SAFETY: the list only ever holds blocks nobody else references; the Mutex serialises access.
unsafe impl Send for FreeList {}

/// The allocator; `#[global_allocator]` in `main.rs`.
pub struct Caching {
    lists: [Mutex<FreeList>; CLASSES],
}

impl Caching {
    pub const fn new() -> Self {
        Caching {
            lists: [const {
                Mutex::new(FreeList {
                    head: ptr::null_mut(),
                    bytes: 0,
                })
            }; CLASSES],
        }
    }
}

impl Default for Caching {
    fn default() -> Self {
        Self::new()
    }
}

/// The size class of a block, or `None` if it is not cached. Pure; tested below.
fn class_of(layout: Layout) -> Option<usize> {
    if layout.align() > ALIGN || layout.size() > MAX_CACHED {
        return None;
    }
    let size = layout.size().max(1 << MIN_SHIFT).next_power_of_two();
    Some((size.trailing_zeros() - MIN_SHIFT) as usize)
}

/// The layout the system sees for every block of `class`.
fn class_layout(class: usize) -> Layout {
    // SAFETY: a power of two between 16 and MAX_CACHED, with a valid power-of-two alignment.
    unsafe { Layout::from_size_align_unchecked(1 << (class as u32 + MIN_SHIFT), ALIGN) }
}

impl Caching {
    fn list(&self, class: usize) -> std::sync::MutexGuard<'_, FreeList> {
        // Nothing panics while a list is held; a poisoned lock still holds a sound list.
        self.lists[class].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A block of `class`: a freed one if there is one, else a new one from the system.
    unsafe fn take(&self, class: usize) -> *mut u8 {
        {
            let mut list = self.list(class);
            let block = list.head;
            if !block.is_null() {
                // SAFETY: a listed block starts with the link to the next one.
                list.head = unsafe { block.cast::<*mut u8>().read() };
                list.bytes -= class_layout(class).size();
                return block;
            }
        }
        // SAFETY: the class layout has a non-zero size.
        unsafe { System.alloc(class_layout(class)) }
    }

    /// Keeps a freed block of `class` for reuse, or gives it back when the list is full.
    unsafe fn give(&self, block: *mut u8, class: usize) {
        let size = class_layout(class).size();
        {
            let mut list = self.list(class);
            if list.bytes + size <= CLASS_CAP {
                // SAFETY: the block is ours now, at least 16 bytes and 16-aligned.
                unsafe { block.cast::<*mut u8>().write(list.head) };
                list.head = block;
                list.bytes += size;
                return;
            }
        }
        // SAFETY: every block of a class came from the system with the class layout.
        unsafe { System.dealloc(block, class_layout(class)) }
    }
}

// SAFETY: blocks of a class are at least as large and as aligned as any layout mapped to it,
// and are handed out to one owner at a time; everything else is the system allocator's.
unsafe impl GlobalAlloc for Caching {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match class_of(layout) {
            Some(class) => unsafe { self.take(class) },
            None => unsafe { System.alloc(layout) },
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match class_of(layout) {
            Some(class) => {
                let block = unsafe { self.take(class) };
                if !block.is_null() {
                    unsafe { block.write_bytes(0, layout.size()) };
                }
                block
            }
            None => unsafe { System.alloc_zeroed(layout) },
        }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        match class_of(layout) {
            Some(class) => {
                // Only what was handed out: the rest of the block was never written (a
                // shrinking realloc wipes what it cuts off), and touching it would fault in
                // pages for nothing.
                // SAFETY: the caller owns `layout.size()` bytes at `block` until this returns.
                unsafe { wipe(block, layout.size()) };
                unsafe { self.give(block, class) }
            }
            None => {
                // SAFETY: as above.
                unsafe { wipe(block, layout.size()) };
                unsafe { System.dealloc(block, layout) }
            }
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees new_size, rounded up to the alignment, fits an isize.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (class_of(layout), class_of(new_layout)) {
            // The block already has room; what a shrink cuts off is wiped now, as the caller
            // will free only `new_size` bytes.
            (Some(old), Some(new)) if old == new => {
                if new_size < layout.size() {
                    // SAFETY: the caller owned `layout.size()` bytes at `block`.
                    unsafe { wipe(block.add(new_size), layout.size() - new_size) };
                }
                block
            }
            // Not System.realloc: it may move the block and free the old one unwiped.
            _ => {
                let moved = unsafe { self.alloc(new_layout) };
                if !moved.is_null() {
                    let n = layout.size().min(new_size);
                    unsafe { ptr::copy_nonoverlapping(block, moved, n) };
                    unsafe { self.dealloc(block, layout) };
                }
                moved
            }
        }
    }
}

/// Zeroes `size` bytes at `block`, in a way the compiler may not drop as a store to memory
/// about to be freed.
///
/// # Safety
/// `block` must be valid for writes of `size` bytes.
unsafe fn wipe(block: *mut u8, size: usize) {
    unsafe { block.write_bytes(0, size) };
    std::hint::black_box(block);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    #[test]
    fn sizes_map_to_power_of_two_classes_and_large_or_over_aligned_blocks_bypass() {
        let cases = [
            ((1, 1), Some(0)),
            ((16, 8), Some(0)),
            ((17, 8), Some(1)),
            ((32, 16), Some(1)),
            ((4096, 16), Some(8)),
            ((4097, 8), Some(9)),
            ((MAX_CACHED, 16), Some(CLASSES - 1)),
            ((MAX_CACHED + 1, 8), None),
            ((64, 32), None),
            ((64, 4096), None),
        ];
        for ((size, align), want) in cases {
            let l = layout(size, align);
            assert_eq!(class_of(l), want, "{size} bytes, align {align}");
            if let Some(class) = want {
                let block = class_layout(class);
                assert!(block.size() >= size && block.align() >= align, "{l:?}");
            }
        }
    }

    #[test]
    fn a_freed_block_is_reused_by_its_class_and_a_full_list_gives_back() {
        let a = Caching::new();
        let l = layout(100, 8);
        unsafe {
            let p = a.alloc(l);
            assert!(!p.is_null());
            p.write_bytes(0xab, 100);
            a.dealloc(p, l);
            // Same class (128 bytes): the same block comes back.
            let q = a.alloc(layout(120, 16));
            assert_eq!(p, q);
            a.dealloc(q, layout(120, 16));
            // A zeroed allocation from the list is zeroed.
            let z = a.alloc_zeroed(l);
            assert_eq!(z, p);
            assert!(std::slice::from_raw_parts(z, 100).iter().all(|b| *b == 0));
            a.dealloc(z, l);

            // Fill one class past its cap: the list keeps CLASS_CAP bytes, no more.
            let big = layout(MAX_CACHED, 16);
            let blocks: Vec<*mut u8> = (0..CLASS_CAP / MAX_CACHED + 3)
                .map(|_| a.alloc(big))
                .collect();
            for b in &blocks {
                a.dealloc(*b, big);
            }
            assert_eq!(a.list(CLASSES - 1).bytes, CLASS_CAP);
        }
    }

    #[test]
    fn a_freed_block_is_wiped_before_it_is_kept() {
        let a = Caching::new();
        let l = layout(200, 8);
        unsafe {
            let p = a.alloc(l);
            p.write_bytes(0x5a, 200);
            // Shrunk within its class (256 bytes): the bytes past the new size are wiped too.
            let shrunk = a.realloc(p, l, 150);
            assert_eq!(shrunk, p);
            a.dealloc(p, layout(150, 8));
            // Still ours (on the class's list): what was written is zero but the list link.
            let kept = std::slice::from_raw_parts(p, 200);
            let link = std::mem::size_of::<*mut u8>();
            assert!(kept[link..].iter().all(|b| *b == 0), "{kept:?}");
            let q = a.alloc(l);
            assert_eq!(p, q);
            a.dealloc(q, l);
        }
    }

    #[test]
    fn realloc_keeps_the_contents_across_classes_and_to_and_from_the_system() {
        let a = Caching::new();
        unsafe {
            let mut size = 10;
            let mut p = a.alloc(layout(size, 8));
            for i in 0..size {
                *p.add(i) = i as u8;
            }
            // Grow within a class, across classes, past the largest class, then shrink back.
            for new_size in [16, 1000, 40_000, 100_000, 300, 12] {
                p = a.realloc(p, layout(size, 8), new_size);
                assert!(!p.is_null());
                for i in 0..size.min(new_size).min(10) {
                    assert_eq!(*p.add(i), i as u8, "{size} -> {new_size}");
                }
                size = new_size;
            }
            a.dealloc(p, layout(size, 8));
        }
    }
}
