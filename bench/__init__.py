"""Benchmarks for chatrt: one command per benchmark, see docs/benchmarks.md.

Load generators (``bench/load``) and baselines (``bench/baselines``) run as separate
processes and speak only the public protocol; they never import chatrt.
"""
