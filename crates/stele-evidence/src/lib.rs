//! The evidence vault (being built).
