"""Deployment targets: each consumes a quantized IR and writes its artefacts into a bundle."""
