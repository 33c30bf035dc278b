//! Where a forward pass spends its time, on request: the decoder's steps (the products, the
//! attention, the norms, the gating, ...) timed and summed per phase (prompts: forwards of more
//! than one token; decode steps: one token) until [`take`]n. For benchmarks and diagnosis
//! (`cargo xtask bench --step-times`); the recording is process-wide, and off it costs one
//! relaxed atomic load per forward.

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A step of the decoder's forward pass. A parallel section's time includes waiting for its
/// slowest thread, so a step that splits badly across threads shows here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The token embeddings looked up and scaled.
    Embedding,
    /// The Q/K/V product (and Qwen2's biases).
    Qkv,
    /// RoPE (and Qwen3's Q/K norms) on the new rows, and their keys and values into the cache.
    Rope,
    /// Attention over the cache.
    Attention,
    /// The attention output quantized for the output projection.
    AttentionQuantize,
    /// The attention's output projection.
    Wo,
    /// The RMS norms, each with the residual add before it and its rows' quantization.
    Norms,
    /// The gate and up product.
    GateUp,
    /// SwiGLU (or GELU) gating, with its rows' quantization.
    Gate,
    /// The down product.
    Down,
    /// The final norm and the output projection (the last position's logits).
    Logits,
}

/// How many steps there are.
const STEPS: usize = 11;

impl Step {
    pub const ALL: [Step; STEPS] = [
        Step::Embedding,
        Step::Qkv,
        Step::Rope,
        Step::Attention,
        Step::AttentionQuantize,
        Step::Wo,
        Step::Norms,
        Step::GateUp,
        Step::Gate,
        Step::Down,
        Step::Logits,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Step::Embedding => "embedding",
            Step::Qkv => "qkv",
            Step::Rope => "rope",
            Step::Attention => "attention",
            Step::AttentionQuantize => "attention-quantize",
            Step::Wo => "wo",
            Step::Norms => "norms",
            Step::GateUp => "gate-up",
            Step::Gate => "gate",
            Step::Down => "down",
            Step::Logits => "logits",
        }
    }
}

/// One phase's forwards: how many, their tokens, their wall time and each step's share of it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PhaseTimes {
    pub forwards: u64,
    pub tokens: u64,
    pub wall: Duration,
    /// Per step, in [`Step::ALL`]'s order.
    pub steps: [Duration; STEPS],
    /// How many times each step ran, in the same order.
    pub calls: [u64; STEPS],
}

impl PhaseTimes {
    pub fn step(&self, step: Step) -> Duration {
        self.steps[step as usize]
    }

    pub fn calls(&self, step: Step) -> u64 {
        self.calls[step as usize]
    }

    /// The wall time outside every step (buffers, bookkeeping).
    pub fn other(&self) -> Duration {
        self.wall.saturating_sub(self.steps.iter().sum())
    }

    fn add(&mut self, clock: &StepClock) {
        self.forwards += 1;
        self.tokens += clock.tokens as u64;
        self.wall += clock.start.elapsed();
        for (total, step) in self.steps.iter_mut().zip(&clock.steps) {
            *total += *step;
        }
        for (total, calls) in self.calls.iter_mut().zip(&clock.calls) {
            *total += *calls;
        }
    }
}

/// What [`take`] returns: prompts' forwards and decode steps apart.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepTimes {
    pub prompt: PhaseTimes,
    pub decode: PhaseTimes,
}

/// One line per phase: milliseconds per forward, per step, largest first.
impl fmt::Display for StepTimes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (name, phase) in [("prompt", &self.prompt), ("decode", &self.decode)] {
            if phase.forwards == 0 {
                continue;
            }
            if !first {
                writeln!(f)?;
            }
            first = false;
            let per = |d: Duration| d.as_secs_f64() * 1e3 / phase.forwards as f64;
            write!(
                f,
                "{name}: {} forwards of {:.0} tokens, {:.2} ms each:",
                phase.forwards,
                phase.tokens as f64 / phase.forwards as f64,
                per(phase.wall)
            )?;
            let mut steps: Vec<(&str, Duration)> = Step::ALL
                .iter()
                .map(|s| (s.name(), phase.step(*s)))
                .chain([("other", phase.other())])
                .collect();
            steps.sort_by_key(|step| std::cmp::Reverse(step.1));
            for (name, d) in steps {
                write!(f, " {name} {:.2}", per(d))?;
            }
        }
        Ok(())
    }
}

static RECORDING: AtomicBool = AtomicBool::new(false);
static TOTALS: Mutex<StepTimes> = Mutex::new(StepTimes {
    prompt: PhaseTimes::EMPTY,
    decode: PhaseTimes::EMPTY,
});

impl PhaseTimes {
    const EMPTY: PhaseTimes = PhaseTimes {
        forwards: 0,
        tokens: 0,
        wall: Duration::ZERO,
        steps: [Duration::ZERO; STEPS],
        calls: [0; STEPS],
    };
}

/// Starts (or stops) timing every forward pass in this process.
pub fn record(on: bool) {
    RECORDING.store(on, Ordering::Relaxed);
}

/// The times summed since the last call, which starts the sums again.
pub fn take() -> StepTimes {
    std::mem::take(&mut *TOTALS.lock().unwrap_or_else(|e| e.into_inner()))
}

/// One forward's clock: each step's time while it runs, added to the totals when it ends.
pub(crate) struct StepClock {
    on: bool,
    tokens: usize,
    start: Instant,
    steps: [Duration; STEPS],
    calls: [u64; STEPS],
}

impl StepClock {
    pub(crate) fn start(tokens: usize) -> Self {
        Self {
            on: RECORDING.load(Ordering::Relaxed),
            tokens,
            start: Instant::now(),
            steps: [Duration::ZERO; STEPS],
            calls: [0; STEPS],
        }
    }

    /// Runs `f`, timed as `step` when recording.
    pub(crate) fn time<T>(&mut self, step: Step, f: impl FnOnce() -> T) -> T {
        if !self.on {
            return f();
        }
        let start = Instant::now();
        let result = f();
        self.steps[step as usize] += start.elapsed();
        self.calls[step as usize] += 1;
        result
    }

    /// The forward is done: its times join the totals.
    pub(crate) fn finish(self) {
        if !self.on {
            return;
        }
        let mut totals = TOTALS.lock().unwrap_or_else(|e| e.into_inner());
        if self.tokens > 1 {
            totals.prompt.add(&self);
        } else {
            totals.decode.add(&self);
        }
    }
}
