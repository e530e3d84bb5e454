"""User-facing errors: each message is one line that names the problem and the fix."""


class HFTransferError(Exception):
    """Bad input or environment; recipes print it as one line and exit 2 without leaving a finished-looking output."""


class DataError(HFTransferError):
    pass


class ModelLoadError(HFTransferError):
    pass


class ConfigError(HFTransferError):
    pass


class HubError(HFTransferError):
    """A Hub push or lookup failed (auth, network, offline mode); the local output is left as it was."""


class DiskFullError(HFTransferError):
    """The disk filled up while writing: the previous output is untouched and checkpoints already written are kept."""
