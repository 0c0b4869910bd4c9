"""The same jobs as the benchmarks, done with nothing but the bare libraries."""
