"""Tests for harvest."""
