"""nn.Modules that own parameters (tier 2)."""
