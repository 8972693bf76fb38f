"""Tests for demo."""
