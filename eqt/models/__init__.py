"""Models: thin compositions of layers, each with a frozen config (tier 3)."""
