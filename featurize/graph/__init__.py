"""Model graphs in, graph features out: load (:mod:`~featurize.graph.load`), bind (:mod:`~featurize.graph.bind`),
resolve shapes (:mod:`~featurize.graph.shapes`, :mod:`~featurize.graph.fold`), bound the resources
(:mod:`~featurize.graph.limits`), and walk the nodes (:mod:`~featurize.graph.walk`, with the weights, memory and
backward accumulators in their own modules); torch modules enter through :mod:`~featurize.graph.torch_export`."""
