"""Small shared helpers: options, registry, logging, checkpoint I/O, distributed."""
