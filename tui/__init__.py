"""meqg's Textual UI: the training monitor (reads RUN_DIR/telemetry.jsonl only) and `meqg app`."""

SCREENS = ("store", "runs", "episode", "eval")  # the screens of `meqg app`, in F-key order
