"""The built-in job kinds. Each subpackage registers itself with the core when imported
(`shared.core.handlers.register_kind`): its handler, its own migrations and SQL if it
keeps tables of its own, and a reader of its own settings if it has any. The core imports this package by name, never a kind directly."""

from shared.kinds import demo, newsletter  # noqa: F401 (imported to register)
