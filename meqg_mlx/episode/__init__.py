"""Diamond episodes: a prompt rolled out as gated concept steps under a budget, with tools; the request schema."""
