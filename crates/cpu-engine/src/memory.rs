//! Where packed weights live: 64-byte aligned, and on Linux in a mapping of their own backed by
//! 2 MiB pages where the kernel grants them.

#![allow(unsafe_code)] // mmap, madvise and the slices over a mapping.

/// Bytes starting on a 64-byte boundary, so that no 64-byte load of a payload straddles two
/// cache lines. Large ones (Linux) get a mapping of their own, start on a 2 MiB boundary and
/// own whole 2 MiB pages, which [`huge_pages`] asks the kernel for before any page is touched
/// (heap memory may come back already backed by small pages, and a zeroing allocator touches
/// it).
#[derive(Debug)]
pub(crate) struct CacheLines {
    storage: Storage,
    start: usize,
    len: usize,
}

#[derive(Debug)]
enum Storage {
    Heap(Vec<u8>),
    #[cfg(target_os = "linux")]
    Mapped(Mapping),
}

impl CacheLines {
    pub(crate) fn zeroed(len: usize) -> Self {
        #[cfg(target_os = "linux")]
        if len >= HUGE_PAGE / 2 {
            // Up to one page of padding: a partly used huge page still beats a tail of small
            // pages that the prefetcher stops at.
            let room = len.next_multiple_of(HUGE_PAGE);
            if let Some(mut mapping) = Mapping::new(room + HUGE_PAGE) {
                let start = mapping.bytes().as_ptr().align_offset(HUGE_PAGE);
                if start < HUGE_PAGE {
                    huge_pages(&mut mapping.bytes_mut()[start..start + room]);
                    return Self {
                        storage: Storage::Mapped(mapping),
                        start,
                        len,
                    };
                }
            }
        }
        let storage = vec![0u8; len + 63];
        let start = storage.as_ptr().align_offset(64).min(63);
        Self {
            storage: Storage::Heap(storage),
            start,
            len,
        }
    }
}

impl AsRef<[u8]> for CacheLines {
    fn as_ref(&self) -> &[u8] {
        let all = match &self.storage {
            Storage::Heap(bytes) => bytes.as_slice(),
            #[cfg(target_os = "linux")]
            Storage::Mapped(mapping) => mapping.bytes(),
        };
        &all[self.start..self.start + self.len]
    }
}

impl AsMut<[u8]> for CacheLines {
    fn as_mut(&mut self) -> &mut [u8] {
        let all = match &mut self.storage {
            Storage::Heap(bytes) => bytes.as_mut_slice(),
            #[cfg(target_os = "linux")]
            Storage::Mapped(mapping) => mapping.bytes_mut(),
        };
        &mut all[self.start..self.start + self.len]
    }
}

/// A private anonymous mapping: zero pages the kernel backs on first touch.
#[cfg(target_os = "linux")]
#[derive(Debug)]
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is owned memory like a Vec's; access goes through & and &mut borrows.
#[cfg(target_os = "linux")]
unsafe impl Send for Mapping {}
// SAFETY: as above.
#[cfg(target_os = "linux")]
unsafe impl Sync for Mapping {}

#[cfg(target_os = "linux")]
impl Mapping {
    /// `len` fresh zero bytes, or None where the kernel refuses.
    fn new(len: usize) -> Option<Self> {
        // SAFETY: a new anonymous mapping aliases nothing; failure is checked.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        (ptr != libc::MAP_FAILED).then(|| Self {
            ptr: ptr.cast(),
            len,
        })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping is `len` readable bytes, alive as long as `self`.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above, writable, and the borrow is exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

#[cfg(target_os = "linux")]
impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the range is the one mmap returned, unmapped once.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

const HUGE_PAGE: usize = 2 << 20;

/// Asks Linux to back `bytes` with 2 MiB pages before they are first written: decoding streams
/// every weight once per token, and 4 KiB pages stop the hardware prefetcher at each page
/// boundary and cost a TLB miss per page. A hint: where it is refused nothing changes.
#[cfg(target_os = "linux")]
fn huge_pages(bytes: &mut [u8]) {
    const HUGE: usize = HUGE_PAGE;
    let start = bytes.as_mut_ptr() as usize;
    let first = start.next_multiple_of(HUGE);
    let end = (start + bytes.len()) / HUGE * HUGE;
    if end > first {
        // SAFETY: the range lies inside `bytes`, which we own mutably; MADV_HUGEPAGE changes
        // how the kernel backs the pages, never their contents.
        unsafe {
            libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn huge_pages(_: &mut [u8]) {}
