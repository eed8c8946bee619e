"""Loihi 2 target: the EGRU as a circuit of Lava's stock neurocore processes (netlist), the Lava network and
its host adapters, neurocore mapping, bundle artefacts, board path.

Modules that need Lava (``network``'s run functions, ``standins``) import it on first use, through ``lava_compat``.
"""
