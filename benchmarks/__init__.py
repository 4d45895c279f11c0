"""Benchmark scripts (run each as ``python benchmarks/NAME.py``) and their shared tools in
``benchmarks.lib``. A package so that the tests and the scripts import the tools, and one
script another's parts, by one name."""
