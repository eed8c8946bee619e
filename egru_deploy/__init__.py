"""egru-deploy: deploy trained EGRU networks onto neuromorphic chips (Loihi 2, SpiNNaker2)."""

__version__ = "0.1.0"
