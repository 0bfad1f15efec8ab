"""Model monitoring: what a model is asked and what it answers, watched from short-lived instances.

Two parts, each off until its setting turns it on, and neither imported before then:

- **payload logging** (:mod:`~modelfn.monitoring.payload`, ``MODELFN_PAYLOAD_LOG``): a sampled copy
  of each request and its answer, written as CloudEvents JSON records in batches, a file (or a
  publish) per batch per instance, from a bounded background queue;
- **drift** (:mod:`~modelfn.monitoring.drift`, ``MODELFN_MONITOR_STORE``): each instance keeps small
  mergeable summaries of the model's inputs and outputs on its reference's bins, and flushes them to
  a store; ``modelfn monitor report`` merges every instance's and tests them against the reference.

Neither may slow or fail a request: a full queue drops records, a failing sink loses them, and
both are counted (``modelfn_payload_records``).
"""
