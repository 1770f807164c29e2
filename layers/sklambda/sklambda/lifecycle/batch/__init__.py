"""Batch predictions, S3 to S3, on a Step Functions Distributed Map (statemachine/batch.asl.json).

plan (``planner``: pin the version, split the input into row-aligned parts) → one child per part
(``scorer``: the API's loader and validator, predictions and rejects, a commit record) → finalize
(``finalizer``: verify every part from S3, write the manifest). The shapes they exchange are in
``models``; where files live in ``layout``; the S3 calls in ``store``; rows in bytes in
``records``; ``jobs`` starts and follows jobs from outside the stack (the CLI).
"""
