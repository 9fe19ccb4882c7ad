"""The I/O layer: Delta tables, the MLflow store, the Spark session; nothing else touches them."""
