"""Domain exceptions: each names what is wrong in words a user can act on.

The class name is what Step Functions records as the error type of a failed stage, so
names are part of the contract with the failure path and the CLI.
"""


class MlcycleError(Exception):
    """Base of every error mlcycle raises on purpose."""


class SpecError(MlcycleError):
    """The problem spec is missing or invalid."""


class BadInputError(MlcycleError):
    """The uploaded data cannot be used: unreadable, empty, or not fit for the spec."""


class GateError(MlcycleError):
    """A model cannot be trained or evaluated on this data (e.g. too few rows per class)."""
