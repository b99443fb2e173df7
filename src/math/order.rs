use crate::grid::Step;

/// When a multistep solver drops to lower order near the end of a grid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LowerOrderFinal {
    /// Keep the full order to the end.
    Never,
    /// Last step first order, second-to-last at most second order.
    Always,
    /// As `Always`, but only for grids with fewer than this many steps (diffusers'
    /// `lower_order_final=True` is `BelowSteps(15)`).
    BelowSteps(usize),
}

/// Which order a multistep solver uses at each step: warm-up (order limited by the outputs
/// stored so far), lower-order-final, Euler-at-final, and first order into `sigma = 0` (higher
/// orders are undefined there: their divided differences are weighted by `h = inf`). Written once;
/// every multistep solver asks it.
///
/// ```
/// use diffusion_samplers::{Grid, LowerOrderFinal, OrderPolicy, Spacing, End, DiscreteVp};
/// let s = DiscreteVp::linear(1e-4, 0.02, 1000)?;
/// let grid = Grid::new(&s, &Spacing::UniformTime, 10, End::Clean)?;
/// let policy = OrderPolicy { order: 3, lower_order_final: LowerOrderFinal::BelowSteps(15), euler_at_final: false };
/// let orders: Vec<usize> = grid.steps().map(|st| policy.order_at(st.index + 1, &st)).collect();
/// assert_eq!(orders, vec![1, 2, 3, 3, 3, 3, 3, 3, 2, 1]);
/// # Ok::<(), diffusion_samplers::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderPolicy {
    /// The solver's order (1-3).
    pub order: usize,
    /// Lower order on the last steps.
    pub lower_order_final: LowerOrderFinal,
    /// Force first order on the last step (diffusers' `euler_at_final`).
    pub euler_at_final: bool,
}

impl OrderPolicy {
    /// Full order `order` throughout (after warm-up).
    pub fn fixed(order: usize) -> OrderPolicy {
        OrderPolicy { order, lower_order_final: LowerOrderFinal::Never, euler_at_final: false }
    }

    /// diffusers' defaults: lower order on the last steps of grids under 15 steps.
    pub fn diffusers(order: usize) -> OrderPolicy {
        OrderPolicy { order, lower_order_final: LowerOrderFinal::BelowSteps(15), euler_at_final: false }
    }

    /// The order to use at `step` when `available` model outputs (the current one included) are
    /// known.
    pub fn order_at(&self, available: usize, step: &Step) -> usize {
        let lower_final = match self.lower_order_final {
            LowerOrderFinal::Never => false,
            LowerOrderFinal::Always => true,
            LowerOrderFinal::BelowSteps(n) => step.count < n,
        };
        let is_last = step.index + 1 == step.count;
        if step.to.is_clean() || (is_last && (lower_final || self.euler_at_final)) {
            return 1;
        }
        let mut order = self.order.min(available).max(1);
        if lower_final && step.index + 2 == step.count {
            order = order.min(2);
        }
        order
    }

    pub(crate) fn validate(&self, max_order: usize, solver: &str) -> crate::Result<()> {
        if self.order == 0 || self.order > max_order {
            return crate::error::config_err(format!("{solver} supports orders 1..={max_order}, got {}", self.order));
        }
        Ok(())
    }
}
