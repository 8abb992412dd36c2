"""The one exception type for bad input from a user.

The CLI turns it into a one-line message and exit code 2; notebooks and widgets show its message.
Every raise says what was wrong *and* what to do instead (the valid choices, the flag to pass).
"""


class UserError(ValueError):
    """Bad input from a user: an unknown name, a value out of range, data that is not there."""


def check_choice(kind: str, value: str, choices) -> str:
    """Return `value` if it is one of `choices`, else raise a UserError listing them."""
    choices = sorted(choices)
    if value not in choices:
        raise UserError(f"unknown {kind} {value!r}; choose one of: {', '.join(choices)}")
    return value


class SettingError(UserError):
    """A UserError about one setting, named as the Python API names it (`align_steps`, `n_tasks`), so that the CLI
    can name the flag a user typed (`--align-steps`, `--tasks`) instead."""

    def __init__(self, setting: str, problem: str):
        super().__init__(f"{setting} {problem}")
        self.setting, self.problem = setting, problem
