"""The test suite. A package so that `tests.layout_contract` (the import contract for
predict.py, pyproject.toml) is found before the `tests` package firefly-python installs."""
