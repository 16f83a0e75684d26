"""Metrics and usage accounting."""
