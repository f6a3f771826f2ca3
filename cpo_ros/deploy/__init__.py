"""From a trained run to a robot: export, the safety shield and robot profiles."""
