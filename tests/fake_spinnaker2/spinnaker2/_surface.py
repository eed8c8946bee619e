"""The py-spinnaker2 surface this fake holds, each name with the public source that shows it.

Keys are "module.Class.attribute" (or "module.function").  Sources (repository, path):
  NIR-rnn  github:neuromorphs/NIR paper/03_rnn/s2_apply.py
  NIR-lif  github:neuromorphs/NIR paper/01_lif/lif_spinnaker2.py
  NICE     github:bvogginger/NIR_Tutorial_at_NICE_2024 notebooks/spinnaker2_demo/spinnaker2_demo.ipynb
  DNF      github:ngr-francesco/dynamic-neural-field-spinnaker2 dynamic_neural_field.py
  NESTML   github:nest/nestml pynestml/codegeneration/resources_spinnaker2/@NEURON_NAME@.py.jinja2
           (commits 4bde5dbec, df6119da6, 00cddf4f7, fcc36c737): a generated custom application
"""

PUBLIC = {
    "snn.Population": "DNF (size=, neuron_model=, params=, name=, record=)",
    "snn.Population.set_max_atoms_per_core": "DNF, NIR-rnn, NICE",
    "snn.Population.params": "NIR-rnn (inp[0].params = spike_times); NESTML (pop_slice.pop.params)",
    "snn.Population.name": "NIR-rnn (pop.name), NESTML (pop_slice.pop.name)",
    "snn.Population.size": "NIR-rnn (hidden_pop.size), NESTML (pop_slice.pop.size)",
    "snn.Population.record": "NESTML (pop_slice.pop.record)",
    "snn.Population.get_voltages": "NIR-rnn, NIR-lif, NICE",
    "snn.Population.get_spikes": "NIR-rnn, NIR-lif, NICE, DNF",
    "snn.Projection": "DNF (pre=, post=, connections=[[pre, post, weight, delay], ...])",
    "snn.Network": "DNF (snn.Network(name))",
    "snn.Network.add": "DNF",
    "snn.Network.populations": "NIR-rnn (net.populations)",
    "snn.Network.reset": "NIR-rnn (net.reset())",
    "hardware.SpiNNaker2Chip": "NIR-rnn, NICE (eth_ip=)",
    "hardware.SpiNNaker2Chip.run": "NIR-rnn, NICE (net, timesteps, sys_tick_in_s=, debug=)",
    "neuron_models.application.BaseApplication": "NESTML (subclassed; BaseApplication.__init__(self, name=...))",
    "neuron_models.application.BaseApplication.name": "NESTML (PEConfig(pe, self.name, self.mem_file))",
    "neuron_models.application.BaseApplication.mem_file": "NESTML (PEConfig(pe, self.name, self.mem_file))",
    "neuron_models.application.BaseApplication.pe_config": "NESTML (pe_config(self, pe, mapper, sim_cfg, debug))",
    "coordinates.ByteAddr": "NESTML (fixed addresses as ByteAddr class attributes)",
    "coordinates.ByteAddr.to_WordAddr": "NESTML",
    "configuration.PEConfig": "NESTML (PEConfig(pe, name, mem_file))",
    "configuration.PEConfig.add_mem_data_to_send": "NESTML df6119da6 (word address, list of uint32 words)",
    "configuration.PEConfig.add_mem_region_to_read": "NESTML (name, MemoryRegion(word address, n_words))",
    "configuration.MemoryRegion": "NESTML",
    "mapper.Mapper.mapping": "NESTML (mapper.mapping.get_population_slice(pe)) -- one source",
    "mapper.Mapper.key_offsets": "NESTML (mapper.key_offsets[pe]) -- one source",
    "mapper.Mapping.get_population_slice": "NESTML -- one source",
    "mapper.PopulationSlice.pop": "NESTML -- one source",
    "mapper.PopulationSlice.start": "NESTML (pop_slice.start, a generated file of 2025-03) -- one source",
    "mapper.PopulationSlice.stop": "NESTML (pop_slice.stop) -- one source",
    "sim_cfg.timer_period": "NESTML (sim_cfg[\"timer_period\"]) -- one source",
    "sim_cfg.n_simulation_ticks": "NESTML (sim_cfg[\"n_simulation_ticks\"]) -- one source",
}

# Names no public source shows; each must be checked against the real package before a board run.
UNVERIFIED = {
    "snn.register_neuron_model": "how a custom application is made known under its neuron_model name: NESTML's "
                                 "builder only copies the generated class into an install folder",
    "voltage_record decoding": "that get_voltages() returns, per neuron, the float32 values of the "
                               "\"voltage_record\" region (per tick: tick word, then one word per neuron), as "
                               "NESTML's C writes it (f2ui(V_m)); py-spinnaker2's decoder is not public",
    "key_offsets iteration": "that mapper.key_offsets is a mapping over every placed PE (NESTML only indexes it)",
}
