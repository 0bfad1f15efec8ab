"""Batch prediction: a file of rows in, predictions out (to storage, and optionally a database).

Started by a storage event (:mod:`modelfn.protocols.events`) or by ``modelfn batch``; see
:mod:`modelfn.batch.job` for the guarantees.
"""
