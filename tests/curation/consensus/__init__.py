"""Tests for curation/consensus."""
