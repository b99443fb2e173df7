use candle_core::Tensor;

use crate::schedule::Point;

/// The last few model outputs of a multistep solver with the points they were taken at,
/// newest first.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use diffusion_samplers::{History, Point};
/// let mut h = History::new(2);
/// for i in 0..3 {
///     h.push(Point::new(i as f64, 0.6, 0.8), Tensor::zeros(1, candle_core::DType::F32, &Device::Cpu)?);
/// }
/// assert_eq!(h.len(), 2);
/// assert_eq!(h.get(0).unwrap().0.t, 2.0);
/// # Ok::<(), candle_core::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct History {
    entries: std::collections::VecDeque<(Point, Tensor)>,
    capacity: usize,
}

impl History {
    /// A history keeping at most `capacity` entries.
    pub fn new(capacity: usize) -> History {
        History { entries: Default::default(), capacity }
    }

    /// Number of stored entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The `i`-th newest entry (`0` = newest).
    pub fn get(&self, i: usize) -> Option<(&Point, &Tensor)> {
        self.entries.get(i).map(|(p, t)| (p, t))
    }

    /// The newest entry.
    pub fn newest(&self) -> Option<(&Point, &Tensor)> {
        self.get(0)
    }

    /// Store an output, dropping the oldest beyond capacity.
    pub fn push(&mut self, point: Point, output: Tensor) {
        if self.capacity == 0 {
            return;
        }
        if self.entries.len() == self.capacity {
            self.entries.pop_back();
        }
        self.entries.push_front((point, output));
    }

    /// Forget everything.
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}
