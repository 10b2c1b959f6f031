"""Subcommands of the ``syncline`` CLI, one module per command family.

Each module defines click commands; ``syncline.cli`` registers them.
"""
