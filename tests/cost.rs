//! Issue 9, defect 10: the work of a run grows linearly with its step count for every registered
//! solver (DPM-Solver singlestep rebuilt its list of orders, one entry per step, at every step:
//! quadratic). Measured without timing: this binary counts the bytes its test thread allocates.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use candle_core::{DType, Device, Tensor};
use diffusion_samplers::names::solver_names;
use diffusion_samplers::{sample, AnySolver, ClassifierFreeGuidance, Edm, End, Grid, Model, Prediction, Spacing};

struct Counting;

thread_local! {
    static BYTES: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = BYTES.try_with(|b| b.set(b.get() + layout.size()));
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes allocated on this thread by a run of `solver` over `steps` steps (grid excluded).
fn bytes_of_run(solver: &AnySolver, steps: usize) -> usize {
    let s = Edm::default();
    let grid = Grid::new(&s, &Spacing::Karras { rho: 7.0 }, steps, End::Min).unwrap();
    let x = Tensor::ones((1, 2), DType::F32, &Device::Cpu).unwrap();
    // guided, so that the CFG++ samplers (which need the unconditional prediction) run too
    let denoiser = |x: &Tensor, _t: f64| x.affine(0.5, 0.0);
    let guided = ClassifierFreeGuidance { denoiser, scale: 1.5, rescale: 0.0 };
    let mut model = Model::new(guided, &s, Prediction::Sample);
    let before = BYTES.with(|b| b.get());
    sample(solver, &mut model, &grid, &x).unwrap();
    BYTES.with(|b| b.get()) - before
}

#[test]
fn defect_10_allocation_grows_linearly_with_the_step_count() {
    for name in solver_names() {
        let solver: AnySolver = name.parse().unwrap();
        let (small, large) = (bytes_of_run(&solver, 2_000), bytes_of_run(&solver, 20_000));
        let ratio = large as f64 / small as f64;
        // linear: 10, up to 16 where a per-run Vec grows by doubling (capacity 2048 vs 32768);
        // the old singlestep order list (8 bytes x steps at every step): 96
        assert!(ratio < 20.0, "{name}: {small} bytes for 2000 steps, {large} for 20000 (x{ratio:.1})");
    }
}
