"""Data package holding the shipped joulecast model (installed as ``joulecast_models``)."""
