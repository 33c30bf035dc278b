//! Buffers a prompt's passes allocate, fill and copy across the rayon pool. On one thread the
//! zeroing and copying of a layer's buffers (~30 MB per TinyLlama layer at 128 tokens) is a few
//! percent of a prompt, but it does not shrink with threads: on 16 cores it was the part that
//! kept prompts from scaling.

#![allow(unsafe_code)] // one raw write path, for tasks that fill places of one buffer that do not overlap.

use std::marker::PhantomData;

use rayon::prelude::*;

/// Below this many values a buffer is filled on the calling thread (a decode step's rows).
const SERIAL_BELOW: usize = 1 << 15;

/// `n` zeros, written across the pool when there are many.
pub(crate) fn zeroed<T: Copy + Default + Send + Sync>(n: usize) -> Vec<T> {
    if n < SERIAL_BELOW {
        return vec![T::default(); n];
    }
    let mut v = Vec::with_capacity(n);
    v.par_extend(rayon::iter::repeat_n(T::default(), n));
    v
}

/// A copy of `x`, written across the pool when it is long.
pub(crate) fn copied(x: &[f32]) -> Vec<f32> {
    if x.len() < SERIAL_BELOW {
        return x.to_vec();
    }
    let mut v = Vec::with_capacity(x.len());
    v.par_extend(x.par_iter().copied());
    v
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
    fn tasks_writing_disjoint_places_fill_the_buffer() {
        let mut buffer = zeroed(1000);
        let out = DisjointWrites::new(&mut buffer);
        (0..100usize).into_par_iter().for_each(|i| {
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
