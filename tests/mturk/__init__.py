"""Tests for mturk."""
