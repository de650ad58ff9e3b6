//! The global window: everything in one window, emitted at the end of input.

/// Bounds that no watermark reaches before the end of input.
pub const BOUNDS: (i64, i64) = (i64::MIN, i64::MAX);

pub fn is_global(bounds: (i64, i64)) -> bool {
    bounds == BOUNDS
}
