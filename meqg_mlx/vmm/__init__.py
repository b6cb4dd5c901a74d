"""Vector Mamba MoE: SSD mixer, experts, router, RVQ codes, planner head."""
