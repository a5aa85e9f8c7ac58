"""Exceptions shared by the core: each names what was wrong and, where there is one, the file."""


class MoScaleError(Exception):
    """Base class of every error the project raises on bad input; its message is user-facing."""


class ConfigError(MoScaleError, ValueError):
    """A configuration file or value does not match its schema."""


class CheckpointError(MoScaleError):
    """A checkpoint is missing, corrupt, truncated, of another format version or kind."""


class DataError(MoScaleError, ValueError):
    """Motion data (a BVH file, a dataset folder, a cache) cannot be read or is invalid."""


class InputError(MoScaleError, ValueError):
    """A request is invalid: empty or over-long text, a duration out of range, ..."""


class UnknownCommandError(InputError):
    """A command (or a part of one) asks for something the model was not trained to do, or has barely
    seen; the message names the nearest known skills."""
