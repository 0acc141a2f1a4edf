"""Bundled recipes (YAML); see README.md. This file makes them reachable as package data."""
