"""leanbert."""
