"""Which GPU, how many, which precision and where to rent them (public entry point: ``predictor.advise``): the
option grid and its prices (:mod:`~predictor.advice.options`), the ranking and limits
(:mod:`~predictor.advice.advise`), and the time-cost views (:mod:`~predictor.advice.plot`)."""
