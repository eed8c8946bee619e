"""User-facing errors. Each carries a one-line message naming the file/field and what was expected;
the CLI prints it and exits with code 2."""


class UserError(ValueError):
    """Bad input from the user (file, field, option). The message is one line."""


class ConversionError(UserError):
    """A source model (checkpoint, NIR, ONNX) cannot be converted to the IR."""


class QuantizationError(UserError):
    """A model or calibration set cannot be quantized for the chosen profile."""


class TargetUnavailable(UserError):
    """A run needs a component (vendor SDK, toolchain, board) that is not installed here."""
