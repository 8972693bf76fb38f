"""Tests for curation."""
