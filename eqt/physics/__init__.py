"""Physics around models: energy to forces and stress, calculators, MD."""
