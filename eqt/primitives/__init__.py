"""Pure tensor functions without parameters (tier 1)."""
