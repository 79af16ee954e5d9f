"""cascode: code completion from a self-testing cascade of code models.

This package holds only the command-line entry point (`cascode.cli`); the
engine, the language server and the benchmarks install as `cascode.engine`,
`cascode.server` and `cascode.benchmarks`.
"""

__version__ = "0.1.0"
