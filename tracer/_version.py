"""The single source of the package version (read by the build backend)."""

__version__ = "0.1.0"

#: The name to ``pip install`` (the import name is ``tracer``; ``tracer`` on PyPI is another project).
DISTRIBUTION = "tracer-ai"
