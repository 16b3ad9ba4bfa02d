"""Benchmarks: commands that print JSON; timings never go into tests."""
