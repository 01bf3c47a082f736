"""Helpers for the demo, the end-to-end tests and the benchmarks: start real processes on
free loopback ports, wait for them with deadlines, and always clean them up."""
