"""eqt: equivariant transformers for geometric deep learning and machine-learned physics."""

__version__ = "0.1.0"
