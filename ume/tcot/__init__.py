"""tcot."""
