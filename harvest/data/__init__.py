"""Data files shipped with harvest (see README.md beside this file)."""
