"""Bort-style optimal subarchitecture extraction: `leanbert search RECIPE.yaml` (see `extract`)."""
