"""Subcommands of the ``syncline`` CLI, one module per command family.

Each module defines click commands; ``syncline.cli`` registers them. Shared by
them: :mod:`~syncline.commands.options` (option definitions),
:mod:`~syncline.commands.console` (errors, warnings, JSON output) and
:mod:`~syncline.commands.deployment` (which deployment a command talks to).
"""
