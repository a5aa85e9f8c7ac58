"""Subcommands of the ``moscale`` CLI; each module exposes ``register(subparsers)``."""
