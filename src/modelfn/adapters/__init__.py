"""Adapters translate a platform's request into :class:`modelfn.http.Request`, and back. Nothing else."""
