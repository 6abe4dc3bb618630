"""Error types that map to the command line's exit codes."""


class InputError(Exception):
    """Bad input from the user (file, model, data or option).

    The CLI prints the message on one line and exits with code 2, so the
    message must name the offending thing, what was expected and what was found.
    """


class BrokenModelError(Exception):
    """A pass produced a model that fails the checker or onnxruntime (a bug, exit 1)."""
