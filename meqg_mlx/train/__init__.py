"""Gated training of the VMM: sequences, metrics, Phi/kappa/regime, checkpoints, telemetry."""
