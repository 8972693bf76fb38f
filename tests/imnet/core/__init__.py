"""Tests for imnet/core: settings, blob store, WordNet."""
