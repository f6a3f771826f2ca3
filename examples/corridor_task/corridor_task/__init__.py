"""A corridor-following task for cpo_ros, packaged on its own (docs/tasks.md)."""
