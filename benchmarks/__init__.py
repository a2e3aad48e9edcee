"""The benchmark: what the singleton guarantee costs, and the job per item."""
