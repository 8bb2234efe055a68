//! The WORM bucket: policy rendering, `bucket init`, `bucket check` (being built).
