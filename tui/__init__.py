"""Textual monitor for meqg runs: reads RUN_DIR/telemetry.jsonl only, never training code."""
