"""The bottom layer: errors, registries, distributed helpers, atomic writes, checkpoint files, logging.

Nothing here imports any other part of srkit (CI checks the layering with import-linter; see
pyproject.toml), so every other layer can use it.
"""
