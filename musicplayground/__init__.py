"""Composition root: builds the application from settings. Nothing imports this package."""
