"""tgws: drive a Telegram user account over a plain websocket."""

__version__ = "0.1.0"
