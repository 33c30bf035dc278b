//! Buffers a prompt's passes allocate, fill and copy across the engine's threads ([`pool`]),
//! and the ways tasks write one buffer at places that do not overlap. On one thread the zeroing
//! and copying of a layer's buffers (~30 MB per TinyLlama layer at 128 tokens) is a few percent
//! of a prompt, but it does not shrink with threads: on 16 cores it was the part that kept
//! prompts from scaling.

#![allow(unsafe_code)] // raw write paths, for tasks that fill places of one buffer that do not overlap.

use std::marker::PhantomData;
use std::mem::MaybeUninit;

use crate::pool;

/// A new buffer of `width`-wide rows (the last may be shorter), each a copy of `x`'s, on which
/// `f(index, rows)` then runs: copy and work in one task, across the threads when there are
/// several rows (a norm's input copied and normalised while in cache, in one section).
pub(crate) fn copied_rows_then<F>(x: &[f32], width: usize, f: F) -> Vec<f32>
where
    F: Fn(usize, &mut [f32]) + Sync,
{
    let copy = |at: usize, part: &mut [MaybeUninit<f32>]| {
        for (slot, v) in part.iter_mut().zip(&x[at..]) {
            slot.write(*v);
        }
    };
    new_rows(x.len(), width, copy, f)
}

/// `update(index, rows)` on each `width`-wide part of `x` in place, then, in the same task, a
/// copy of the part in a new buffer on which `then(index, rows)` runs (a residual add and the
/// next norm in one section).
pub(crate) fn updated_then_copied<U, F>(x: &mut [f32], width: usize, update: U, then: F) -> Vec<f32>
where
    U: Fn(usize, &mut [f32]) + Sync,
    F: Fn(usize, &mut [f32]) + Sync,
{
    let x = Chunks::new(x, width);
    let copy = |at: usize, part: &mut [MaybeUninit<f32>]| {
        // SAFETY: the task for part `at / width` alone takes that part of `x`.
        let rows = unsafe { x.get(at / width) };
        update(at / width, rows);
        for (slot, v) in part.iter_mut().zip(rows.iter()) {
            slot.write(*v);
        }
    };
    new_rows(x.len, width, copy, then)
}

/// A new buffer of `n` values in `width`-wide rows, each zeroed and then given to `f(index,
/// row)`, in one task per row, across the threads when there are several.
pub(crate) fn zeroed_rows_then<F>(n: usize, width: usize, f: F) -> Vec<f32>
where
    F: Fn(usize, &mut [f32]) + Sync,
{
    new_rows(n, width, |_, part| part.fill(MaybeUninit::new(0.0)), f)
}

/// A buffer of `n` values in `width`-wide parts: `init(start, part)` writes every value of a
/// part, then `then(index, part)` runs on it, in the same task.
pub(crate) fn new_rows<T: Copy + Send>(
    n: usize,
    width: usize,
    init: impl Fn(usize, &mut [MaybeUninit<T>]) + Sync,
    then: impl Fn(usize, &mut [T]) + Sync,
) -> Vec<T> {
    let mut v = Vec::with_capacity(n);
    each_chunk_mut(&mut v.spare_capacity_mut()[..n], width, |i, part| {
        init(i * width, part);
        // SAFETY: `init` wrote every value of the part (both callers above do), and
        // `MaybeUninit<T>` has `T`'s layout.
        let part = unsafe { &mut *(std::ptr::from_mut(part) as *mut [T]) };
        then(i, part);
    });
    // SAFETY: the parts cover `..n` and each was written by `init`.
    unsafe { v.set_len(n) };
    v
}

/// A new buffer of `n` values that `write` fills through a [`DisjointWrites`] (tasks of a
/// product or of attention, each at its own places), with no zeroing pass before: at 128
/// tokens a layer's outputs are megabytes each.
///
/// # Safety
/// `write` writes every place of the buffer, or panics.
pub(crate) unsafe fn written(n: usize, write: impl FnOnce(&DisjointWrites<'_>)) -> Vec<f32> {
    let mut v = Vec::with_capacity(n);
    // SAFETY: the caller's promise, passed on.
    unsafe { extended(&mut v, n, write) };
    v
}

/// `v` grown by `n` values that `write` fills through a [`DisjointWrites`] (place 0 is the first
/// new value), with no zeroing pass before: a prompt's keys and values go into the KV cache from
/// the tasks that make them, where the cache's new pages are first touched.
///
/// # Safety
/// `write` writes every new place, or panics (then `v` keeps its old length).
pub(crate) unsafe fn extended(v: &mut Vec<f32>, n: usize, write: impl FnOnce(&DisjointWrites<'_>)) {
    v.reserve(n);
    let spare = &mut v.spare_capacity_mut()[..n];
    write(&DisjointWrites {
        ptr: spare.as_mut_ptr().cast(),
        len: n,
        _buffer: PhantomData,
    });
    let len = v.len() + n;
    // SAFETY: `write` wrote every new place (the caller's promise) and did not panic.
    unsafe { v.set_len(len) };
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

    pub(crate) fn len(&self) -> usize {
        self.len
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
    fn buffers_hold_what_they_say_in_one_part_or_many() {
        for n in [0, 5, 99, 100, 32775] {
            let x: Vec<f32> = (0..n).map(|i| i as f32).collect();
            assert_eq!(copied_rows_then(&x, 100, |_, _| {}), x);
            let doubled = copied_rows_then(&x, 100, |i, rows| {
                rows.iter_mut().for_each(|v| *v = 2.0 * *v + i as f32)
            });
            assert!(
                doubled
                    .iter()
                    .enumerate()
                    .all(|(k, v)| *v == 2.0 * k as f32 + (k / 100) as f32)
            );
            let rows = zeroed_rows_then(n, 100, |i, row| {
                assert!(row.iter().all(|v| *v == 0.0));
                row[0] = i as f32 + 1.0;
            });
            assert!(rows.iter().enumerate().all(|(k, v)| *v
                == if k % 100 == 0 {
                    (k / 100) as f32 + 1.0
                } else {
                    0.0
                }));
            // SAFETY: one task writes every place.
            let all = unsafe { written(n, |out| out.write(0, &x)) };
            assert_eq!(all, x);
            let mut grown = vec![-1.0, -2.0];
            unsafe { extended(&mut grown, n, |out| out.write(0, &x)) };
            assert_eq!(grown[..2], [-1.0, -2.0]);
            assert_eq!(grown[2..], x);
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
        let mut buffer = vec![0f32; 1000];
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
