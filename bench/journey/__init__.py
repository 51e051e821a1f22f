"""The whole journey side by side in one run: ``python -m bench.journey [--quick]`` (see ``__main__``)."""
