"""SpiNNaker2 target: mapping (PEs, chips, routing), PE memory images, the C PE program (``pe/``),
its build, QEMU cross-check against ``egru_deploy.hwsim.spinnaker2``, and the py-spinnaker2 board path."""
