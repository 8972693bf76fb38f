"""Tests for bench."""
