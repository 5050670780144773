"""The batch path: the Parquet event archive, metrics compiled to SQL, DuckDB and Spark.
"""
