"""Training runs: the trainer, rollout workers, fleet merging, settings and checkpoints."""
