# A package, so that its conftest is imported as `e2e.conftest` and does not replace
# tests/conftest.py as the module `conftest` (which other tests import helpers from).
