"""The Spark engine: a SparkSession built one way, and batch scoring through the scoring core.

pyspark is an optional extra (``pip install 'churnstream[spark]'``); nothing here imports it
at module level, so the rest of churnstream works without it.
"""
