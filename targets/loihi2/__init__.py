"""Loihi 2 target: Lava processes and models, network builder, neurocore mapping, bundle artefacts, board path.

Modules that need Lava (``process``, ``models``) import it on first use, through ``lava_compat``.
"""
