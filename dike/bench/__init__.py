"""Benchmarks: one module per benchmark, generated from nbs/1x_<name>.ipynb; each registers itself with dike.evaluate."""
