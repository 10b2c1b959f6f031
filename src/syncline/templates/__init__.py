"""Project templates for ``syncline init`` (package data: every file under a template's folder).

``default/`` is the template ``syncline init`` writes; ``auth/`` (``syncline
init --template auth``) has built-in sign-in and a React page for it. Files are copied as
they are, except that ``gitignore`` becomes ``.gitignore`` (dotfiles are
easy to lose in packaging) and ``{{project_name}}`` in ``README.md`` becomes
the new project's folder name.
"""
