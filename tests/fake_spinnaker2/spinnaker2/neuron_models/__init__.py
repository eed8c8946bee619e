"""FAKE spinnaker2.neuron_models."""
