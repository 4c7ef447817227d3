"""One small hierarchy of errors: library code raises these, only a ``main`` turns them into exit codes."""


class GemsightError(Exception):
    """Base of every error gemsight raises on purpose; its message is meant for a person."""

    exit_code = 2


class ConfigError(GemsightError):
    """A device config, command-line argument or options file is wrong (the message names the field)."""


class DataError(GemsightError):
    """A dataset, image or video is missing, unreadable or mislabelled (the message names the file)."""


class ManifestError(GemsightError):
    """A model has no readable manifest, or the manifest disagrees with the model."""


class SourceError(GemsightError):
    """A camera source cannot be opened or has failed."""


class RuntimeUnavailable(GemsightError):
    """An inference runtime's library is missing or cannot run here."""


class InferenceError(GemsightError):
    """An inference runtime failed, or was given inputs that do not match the model."""


class CalibrationError(GemsightError):
    """INT8 calibration failed or an artifact did not pass the accuracy gate."""


class BundleError(GemsightError):
    """A model bundle is malformed, tampered with, unsigned, or cannot be installed."""


class MessageError(GemsightError):
    """A ZeroMQ message cannot be built, encoded, decoded, or does not match its JSON Schema."""


class LinkError(GemsightError):
    """A device refused this client's connection (a failed CURVE handshake); names the device and the reason."""
