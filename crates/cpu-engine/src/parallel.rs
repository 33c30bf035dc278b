//! Buffers a prompt's passes allocate, fill and copy across the engine's threads ([`pool`]),
//! and the ways tasks write one buffer at places that do not overlap. On one thread the zeroing
//! and copying of a layer's buffers (~30 MB per TinyLlama layer at 128 tokens) is a few percent
//! of a prompt, but it does not shrink with threads: on 16 cores it was the part that kept
//! prompts from scaling.

#![allow(unsafe_code)] // raw write paths, for tasks that fill places of one buffer that do not overlap.

use std::marker::PhantomData;
use std::mem::MaybeUninit;

use crate::pool;

/// Below this many values a buffer is filled on the calling thread (a decode step's rows); the
/// size of a task's part above it.
const SERIAL_BELOW: usize = 1 << 15;

/// `n` zeros, written across the threads when there are many.
pub(crate) fn zeroed<T: Copy + Default + Send + Sync>(n: usize) -> Vec<T> {
    filled(n, |_, part| part.fill(MaybeUninit::new(T::default())))
}

/// A copy of `x`, written across the threads when it is long.
pub(crate) fn copied(x: &[f32]) -> Vec<f32> {
    filled(x.len(), |at, part| {
        for (slot, v) in part.iter_mut().zip(&x[at..]) {
            slot.write(*v);
        }
    })
}

/// A buffer of `n` values whose every part `fill(start, part)` writes, parts across the
/// threads when there are many.
fn filled<T: Copy + Send + Sync>(
    n: usize,
    fill: impl Fn(usize, &mut [MaybeUninit<T>]) + Sync,
) -> Vec<T> {
    let mut v = Vec::with_capacity(n);
    each_chunk_mut(&mut v.spare_capacity_mut()[..n], SERIAL_BELOW, |i, part| {
        fill(i * SERIAL_BELOW, part)
    });
    // SAFETY: the chunks cover `..n` and `fill` wrote every value of each.
    unsafe { v.set_len(n) };
    v
}

/// Calls `f(index, chunk)` on each `width`-wide chunk of `x` (the last may be shorter), chunks
/// across the threads when there are several (one, a decode step's row, stays on the calling
/// thread: no section to pay).
pub(crate) fn each_chunk_mut<T, F>(x: &mut [T], width: usize, f: F)
where
    T: Send,
    F: Fn(usize, &mut [T]) + Sync,
{
    let chunks = Chunks::new(x, width);
    pool::for_each(chunks.count(), |i| {
        // SAFETY: task i alone takes chunk i.
        f(i, unsafe { chunks.get(i) })
    });
}

/// A buffer split into `width`-wide chunks (the last may be shorter) that tasks of a section
/// take, each its own.
pub(crate) struct Chunks<'a, T> {
    ptr: *mut T,
    len: usize,
    width: usize,
    _buffer: PhantomData<&'a mut [T]>,
}

// SAFETY: chunks are handed out through `get`, whose callers promise one task per chunk; the
// buffer outlives every task (the borrow `'a`), and `T: Send` lets another thread own a chunk.
unsafe impl<T: Send> Send for Chunks<'_, T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for Chunks<'_, T> {}

impl<'a, T> Chunks<'a, T> {
    pub(crate) fn new(buffer: &'a mut [T], width: usize) -> Self {
        assert!(width > 0, "chunks of no width");
        Self {
            ptr: buffer.as_mut_ptr(),
            len: buffer.len(),
            width,
            _buffer: PhantomData,
        }
    }

    pub(crate) fn count(&self) -> usize {
        self.len.div_ceil(self.width)
    }

    /// Chunk `i`.
    ///
    /// # Safety
    /// No other task holds chunk `i` while this one may.
    #[allow(clippy::mut_from_ref)] // the chunks are disjoint; the caller promises one holder each
    pub(crate) unsafe fn get(&self, i: usize) -> &'a mut [T] {
        assert!(i < self.count(), "chunk {i} past the buffer");
        let start = i * self.width;
        let len = self.width.min(self.len - start);
        // SAFETY: inside the buffer (asserted), which `'a` keeps alive; nobody else holds this
        // chunk (the caller's promise) and chunks do not overlap.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), len) }
    }
}

/// A buffer that tasks of the pool write at the same time, each at places no other task
/// writes (a matrix product's row groups, in every token's row; an attention head's columns).
/// Reads happen after the tasks end, through the `&mut` it borrows.
pub(crate) struct DisjointWrites<'a> {
    ptr: *mut f32,
    len: usize,
    _buffer: PhantomData<&'a mut [f32]>,
}

// SAFETY: writes go through `write`, whose callers promise that no two tasks write one place;
// the buffer outlives every task (the borrow `'a`).
unsafe impl Send for DisjointWrites<'_> {}
// SAFETY: as above.
unsafe impl Sync for DisjointWrites<'_> {}

impl<'a> DisjointWrites<'a> {
    pub(crate) fn new(buffer: &'a mut [f32]) -> Self {
        Self {
            ptr: buffer.as_mut_ptr(),
            len: buffer.len(),
            _buffer: PhantomData,
        }
    }

    /// Copies `values` to `at..at + values.len()`.
    ///
    /// # Safety
    /// No other task writes any of these places while this one may.
    pub(crate) unsafe fn write(&self, at: usize, values: &[f32]) {
        assert!(
            at.checked_add(values.len())
                .is_some_and(|end| end <= self.len),
            "write past the buffer"
        );
        // SAFETY: inside the buffer (asserted), which `'a` keeps alive; no other task writes
        // these places (the caller's promise) and nothing reads them until the tasks end.
        unsafe {
            std::ptr::copy_nonoverlapping(values.as_ptr(), self.ptr.add(at), values.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_hold_what_they_say_on_either_side_of_the_threshold() {
        for n in [0, 5, SERIAL_BELOW - 1, SERIAL_BELOW, 3 * SERIAL_BELOW + 7] {
            assert!(zeroed::<f32>(n).iter().all(|v| *v == 0.0) && zeroed::<f32>(n).len() == n);
            let x: Vec<f32> = (0..n).map(|i| i as f32).collect();
            assert_eq!(copied(&x), x);
        }
    }

    #[test]
    fn chunks_cover_the_buffer_once_the_last_shorter() {
        let mut x = vec![0u32; 1000];
        each_chunk_mut(&mut x, 64, |i, chunk| {
            assert_eq!(chunk.len(), if i == 15 { 1000 - 15 * 64 } else { 64 });
            chunk.iter_mut().for_each(|v| *v += i as u32 + 1);
        });
        assert!(x.iter().enumerate().all(|(k, v)| *v == (k / 64) as u32 + 1));
    }

    #[test]
    fn tasks_writing_disjoint_places_fill_the_buffer() {
        let mut buffer = zeroed(1000);
        let out = DisjointWrites::new(&mut buffer);
        pool::for_each(100, |i| {
            let values: Vec<f32> = (0..10).map(|k| (i * 10 + k) as f32).collect();
            // SAFETY: task i alone writes 10i..10i + 10.
            unsafe { out.write(i * 10, &values) };
        });
        assert!(buffer.iter().enumerate().all(|(i, v)| *v == i as f32));
    }

    #[test]
    #[should_panic(expected = "write past the buffer")]
    fn a_write_past_the_end_panics() {
        let mut buffer = vec![0f32; 4];
        let out = DisjointWrites::new(&mut buffer);
        // SAFETY: one task.
        unsafe { out.write(2, &[1.0, 2.0, 3.0]) };
    }
}
