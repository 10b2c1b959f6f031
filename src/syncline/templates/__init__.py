"""Project templates for ``syncline init`` (package data: every file under a template's folder).

``default/`` is the template ``syncline init`` writes. Files are copied as
they are, except that ``gitignore`` becomes ``.gitignore`` (dotfiles are
easy to lose in packaging) and ``{{project_name}}`` in ``README.md`` becomes
the new project's folder name.
"""
