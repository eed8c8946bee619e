"""CPU stand-ins of the Loihi 2 host adapters, alone in this package: Lava executes every module beside a
process class when it looks for its models."""
