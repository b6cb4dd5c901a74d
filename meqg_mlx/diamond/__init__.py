"""Diamond: objective, views, modal ledger, gate, budget, episodes, tools."""
