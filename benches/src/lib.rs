//! Shared helpers for the medchain benchmarks (workload generation).
