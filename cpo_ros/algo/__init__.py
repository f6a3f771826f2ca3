"""CPO and its baselines: the update rules, trust region, networks, buffer and critics."""
