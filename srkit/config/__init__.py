"""Option files: YAML reading, the typed schema of every section, strict checks, generated docs.

Above srkit.core only: the components a ``type:`` names are looked up through the registries, never
imported, so the layers that define them (archs, data, models) sit above this one.
"""
