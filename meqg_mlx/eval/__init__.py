"""`meqg eval`: does the gate, does the ledger help? Metrics, tasks, ablations and the report."""
