"""The test suite: a package tree mirroring the code, so helpers import as `tests.<area>.<module>`."""
