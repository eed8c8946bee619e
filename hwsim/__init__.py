"""Bit-accurate emulators of the targets, one module per chip."""
