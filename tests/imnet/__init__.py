"""Tests for imnet: the CLI on top (imnet/core has its own package below)."""
