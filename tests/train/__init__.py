"""Tests for train."""
