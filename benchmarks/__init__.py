"""Calibration, Pareto search and the project's benchmarks (`cascode.benchmarks`)."""
