"""Tasks: reward, costs, observation, resets, sensors and safe area of each built-in task."""
