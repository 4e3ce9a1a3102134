//! The process's allocator: glibc's malloc, except that blocks of 16 KiB up to 32 KiB
//! are each mapped on their own, so that only the pages written become resident.
//!
//! Each HTTP/2 connection has a 16 KiB write buffer (h2's `FramedWrite`, a fixed
//! capacity no setting changes) into which a miner's small requests write a few hundred
//! bytes at its start. Carved from malloc's heap, its pages are resident wherever
//! something held them before; mapped alone, one page of four is. glibc's own map
//! threshold (`M_MMAP_THRESHOLD`, see [`super::tune`]) does not do this: glibc maps a
//! block only when its heap cannot serve it, and at 10,000 miners no buffer was mapped.
//! Measured at 2,000 miners on the same simulated fleet: 89 MiB with the buffers in the
//! heap, 86 MiB mapped.
//!
//! The range is narrow on purpose: each mapped block costs a map and an unmap, and the
//! kernel's count of maps is limited (`vm.max_map_count`, 65,530 by default). Blocks
//! of 32 KiB and more (batches, Parquet pages) come and go by the thousand and stay
//! with glibc. Neighbouring maps merge into one, and at most [`MAX_MAPPED`] blocks are
//! mapped at once; past that, or when the kernel refuses a map, a block comes from the
//! heap. Which is which is told by the address: a map starts on a page, and a block
//! from the heap is placed off a page, with its offset in the byte before it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// The blocks mapped on their own: h2's write buffer, and whatever else is that size.
const MAPPED_SIZES: std::ops::Range<usize> = 16 << 10..32 << 10;
/// At most this many blocks are mapped at once (twice the connections of a fleet of
/// 10,000 with some to spare, and half the kernel's default limit on maps).
const MAX_MAPPED: usize = 32_768;
/// Map addresses are multiples of the page size, which is 4 KiB or a multiple of it.
const PAGE: usize = 4 << 10;
/// A block from the heap in place of a map has this much room before it, where its
/// offset from the heap's block is kept (16 or 32, so the block keeps its alignment).
const ROOM: usize = 32;

/// glibc's malloc, with the blocks of [`MAPPED_SIZES`] mapped on their own. Installed
/// by rigtap's `main` as the global allocator.
pub struct Allocator {
    /// Blocks mapped now.
    mapped: AtomicUsize,
    /// At most this many at once.
    limit: usize,
}

impl Allocator {
    pub const fn new() -> Self {
        Allocator {
            mapped: AtomicUsize::new(0),
            limit: MAX_MAPPED,
        }
    }

    fn map(&self, size: usize) -> Option<*mut u8> {
        if self.mapped.fetch_add(1, Relaxed) >= self.limit {
            self.mapped.fetch_sub(1, Relaxed);
            return None;
        }
        // SAFETY: an anonymous private map of `size` bytes; nothing else is touched.
        let block = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if block == libc::MAP_FAILED {
            self.mapped.fetch_sub(1, Relaxed);
            return None;
        }
        Some(block.cast())
    }
}

impl Default for Allocator {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether a block of this layout is this allocator's (mapped, or from the heap with
/// its offset); every other block is glibc's alone.
fn ours(layout: Layout) -> bool {
    MAPPED_SIZES.contains(&layout.size()) && layout.align() <= 16
}

/// The offset of a block from the heap's block at `at`: 16, unless that lands on a page.
fn offset_from(at: usize) -> usize {
    if (at + 16).is_multiple_of(PAGE) {
        32
    } else {
        16
    }
}

fn heap_layout(layout: Layout) -> Layout {
    // SAFETY: the size is under 32 KiB plus ROOM, the alignment 16, a power of two.
    unsafe { Layout::from_size_align_unchecked(layout.size() + ROOM, 16) }
}

/// A block from the heap, placed off a page.
///
/// # Safety
/// `layout` is one of [`ours`].
unsafe fn from_heap(layout: Layout, zeroed: bool) -> *mut u8 {
    let heap = heap_layout(layout);
    let at = if zeroed {
        System.alloc_zeroed(heap)
    } else {
        System.alloc(heap)
    };
    if at.is_null() {
        return at;
    }
    let offset = offset_from(at as usize);
    let block = at.add(offset);
    *block.sub(1) = offset as u8;
    block
}

unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !ours(layout) {
            return System.alloc(layout);
        }
        self.map(layout.size())
            .unwrap_or_else(|| from_heap(layout, false))
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !ours(layout) {
            return System.alloc_zeroed(layout);
        }
        // A fresh map reads as zeros.
        self.map(layout.size())
            .unwrap_or_else(|| from_heap(layout, true))
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        if !ours(layout) {
            return System.dealloc(block, layout);
        }
        if (block as usize).is_multiple_of(PAGE) {
            self.mapped.fetch_sub(1, Relaxed);
            // Unmapping part of a merged map splits it, which fails only past the
            // kernel's limit on maps; the pages are then given back and the addresses
            // kept.
            if libc::munmap(block.cast(), layout.size()) != 0 {
                libc::madvise(block.cast(), layout.size(), libc::MADV_DONTNEED);
            }
        } else {
            let offset = usize::from(*block.sub(1));
            System.dealloc(block.sub(offset), heap_layout(layout));
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = Layout::from_size_align_unchecked(new_size, layout.align());
        if !ours(layout) && !ours(new) {
            return System.realloc(block, layout, new_size);
        }
        let moved = self.alloc(new);
        if !moved.is_null() {
            std::ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
            self.dealloc(block, layout);
        }
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: usize) -> Layout {
        Layout::from_size_align(size, 8).unwrap()
    }

    fn fill(block: *mut u8, size: usize, seed: u8) {
        for i in 0..size {
            // SAFETY: within the block of `size` bytes.
            unsafe { *block.add(i) = seed.wrapping_add(i as u8) }
        }
    }

    fn holds(block: *const u8, size: usize, seed: u8) -> bool {
        // SAFETY: within a block of at least `size` bytes.
        (0..size).all(|i| unsafe { *block.add(i) } == seed.wrapping_add(i as u8))
    }

    #[test]
    fn blocks_keep_their_bytes_across_every_kind_of_move() {
        // glibc's to ours, ours to ours, ours to glibc's, and glibc's to glibc's.
        let allocator = Allocator::new();
        let sizes = [
            8 << 10,
            16 << 10,
            20 << 10,
            40 << 10,
            31 << 10,
            100,
            16 << 10,
        ];
        // SAFETY: each block is used within its size and freed with its layout.
        unsafe {
            let mut block = allocator.alloc(layout(sizes[0]));
            fill(block, sizes[0], 7);
            for pair in sizes.windows(2) {
                let (from, to) = (pair[0], pair[1]);
                block = allocator.realloc(block, layout(from), to);
                assert!(!block.is_null());
                assert!(holds(block, from.min(to), 7), "{from} → {to}");
                fill(block, to, 7);
            }
            allocator.dealloc(block, layout(sizes[sizes.len() - 1]));
        }
    }

    #[test]
    fn a_mapped_block_holds_only_the_pages_written() {
        let allocator = Allocator::new();
        let size = 16 << 10;
        // SAFETY: the block is used within its size and freed with its layout; mincore
        // reads the residence of its pages into a vector of one byte per page.
        unsafe {
            let block = allocator.alloc_zeroed(layout(size));
            assert_eq!(block as usize % PAGE, 0, "mapped on its own");
            assert!(holds_zeros(block, 1), "reads as zeros");
            fill(block, 300, 1);
            let mut resident = vec![0u8; size / PAGE];
            assert_eq!(
                libc::mincore(block.cast(), size, resident.as_mut_ptr()),
                0,
                "{}",
                std::io::Error::last_os_error()
            );
            let resident: Vec<u8> = resident.iter().map(|page| page & 1).collect();
            assert_eq!(resident, [1, 0, 0, 0]);
            allocator.dealloc(block, layout(size));
        }
    }

    unsafe fn holds_zeros(block: *const u8, size: usize) -> bool {
        (0..size).all(|i| *block.add(i) == 0)
    }

    #[test]
    fn a_block_from_the_heap_in_place_of_a_map_is_off_a_page() {
        assert_eq!(offset_from(0x1000), 16);
        assert_eq!(offset_from(0x1ff0), 32);
        let allocator = Allocator::new();
        for zeroed in [false, true] {
            let size = 20 << 10;
            // SAFETY: the block is used within its size and freed with its layout.
            unsafe {
                let block = from_heap(layout(size), zeroed);
                assert_ne!(block as usize % PAGE, 0);
                assert_eq!(block as usize % 16, 0);
                if zeroed {
                    assert!(holds_zeros(block, size));
                }
                fill(block, size, 3);
                let moved = allocator.realloc(block, layout(size), 24 << 10);
                assert!(holds(moved, size, 3));
                allocator.dealloc(moved, layout(24 << 10));
            }
        }
    }

    #[test]
    fn past_the_limit_blocks_come_from_the_heap() {
        let allocator = Allocator {
            mapped: AtomicUsize::new(0),
            limit: 1,
        };
        let size = 16 << 10;
        // SAFETY: each block is used within its size and freed with its layout.
        unsafe {
            let first = allocator.alloc(layout(size));
            let second = allocator.alloc(layout(size));
            assert_eq!(first as usize % PAGE, 0);
            assert_ne!(second as usize % PAGE, 0);
            fill(second, size, 9);
            allocator.dealloc(first, layout(size));
            assert_eq!(allocator.mapped.load(Relaxed), 0);
            let third = allocator.alloc(layout(size));
            assert_eq!(
                third as usize % PAGE,
                0,
                "a map again once one is given back"
            );
            assert!(holds(second, size, 9));
            allocator.dealloc(second, layout(size));
            allocator.dealloc(third, layout(size));
        }
    }
}
