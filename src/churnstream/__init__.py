"""churnstream: real-time and batch customer-churn scoring on Kafka."""

__version__ = "0.1.0"
