"""Prompt and reply texts, kept as files and loaded by name."""
