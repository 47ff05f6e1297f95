"""The physics prior: the whole-graph roofline and power prior (:mod:`~featurize.physics.prior`) and the per-layer
roofline (:mod:`~featurize.physics.layers`), priced on the precision paths of :mod:`featurize.hardware.precision`."""
