"""The workload simulator with ground truth (``tandem simulate``)."""
