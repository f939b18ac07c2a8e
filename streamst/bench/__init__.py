"""Benchmarks (``streamst bench TARGET``; argparse in :mod:`streamst.commands.bench`): one
module per target with a ``command(args)`` entry point and functions that return JSON-able
reports; :mod:`streamst.bench.stats` is their one percentile helper. Product modules never
import this package."""
