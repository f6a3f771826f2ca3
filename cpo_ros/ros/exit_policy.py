"""What the end of a node's process means for its bring-up: one rule for launch and bringup.

Pure Python (no launch, no rclpy), so the rule is tested without a ROS install and the launch
files (cpo_ros/ros/launch_description.py) and `cpo-ros bringup` cannot drift apart.
"""

from dataclasses import dataclass, field

CONFIGURE_ERROR = 2
"""Exit code of a node that could not configure (a bad parameter, checkpoint or policy)."""


@dataclass(frozen=True)
class ExitOutcome:
    """The reading of one process end: what to log, whether the launch ends, whether it failed."""

    message: str
    ends_launch: bool
    failed: bool
    """The launch must exit non-zero (now, or when it ends later)."""


def exit_outcome(name: str, code: int, *, ends_bringup: bool, respawn: bool,
                 shutting_down: bool) -> ExitOutcome:
    """Return what the end of node `name` with exit `code` means for its bring-up.

    While the launch shuts down (Ctrl-C, SIGTERM, the learner's clean end) every node stops
    with it: nothing failed. Code 2 means the node could not configure, and a respawn would
    fail alike: the launch ends with an error. The node that ends the bring-up ends it: cleanly
    with code 0 (the learner's budget spent), with an error otherwise, unless it is respawned
    (training). Any other end is respawned in training; in deployment (no respawn) the shield
    keeps the robot stopped and runs on, and the launch exits non-zero when it ends.
    """
    if shutting_down:
        return ExitOutcome(f'{name} stopped with the launch (exit code {code})', False, False)
    if code == CONFIGURE_ERROR:
        return ExitOutcome(f'{name} could not configure (exit code 2, see its error above)',
                           True, True)
    if ends_bringup and code == 0:
        return ExitOutcome(f'{name} ended (exit code 0)', True, False)
    if respawn:
        return ExitOutcome(f'{name} ended (exit code {code}); it is started again', False,
                           False)
    if ends_bringup:
        return ExitOutcome(f'{name} failed (exit code {code})', True, True)
    if code == 0:
        return ExitOutcome(f'{name} ended (exit code 0); the shield keeps the robot stopped',
                           False, False)
    return ExitOutcome(f'{name} failed (exit code {code}); the shield keeps the robot stopped '
                       f'and the launch will exit non-zero', False, True)


@dataclass
class FailureRecord:
    """The failures of one bring-up so far; the launch exits non-zero once it holds any."""

    failures: list[str] = field(default_factory=list)
    reported: bool = False

    def record(self, outcome: ExitOutcome, shutting_down: bool) -> str | None:
        """Note `outcome`; return the error to end the launch with, once, when it is due.

        It is due when the launch ends (by this outcome, or it is already shutting down) and
        some node failed; launch turns the error into exit code 1.
        """
        if outcome.failed:
            self.failures.append(outcome.message)
        if self.failures and not self.reported and (outcome.ends_launch or shutting_down):
            self.reported = True
            return 'the launch failed: ' + '; '.join(self.failures)
        return None
