"""The transport-free runtime: artifact fetch, predictors, hooks, the model cache.

Nothing here imports a web framework or the CLI.
"""
