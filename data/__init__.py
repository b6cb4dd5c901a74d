"""meqg's shipped data (`meqg_data`): the demo's model config and small samples; stores and runs live
under $MEQG_HOME."""

from pathlib import Path

DEMO_CONFIG = Path(__file__).parent / "configs" / "demo.yaml"  # the model `meqg demo` trains
