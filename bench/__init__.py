"""Benchmarks: each measures hpsweep and its baseline in the same run, interleaved, and reports a ratio."""
