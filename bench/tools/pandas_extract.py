"""The common hand-rolled script: pandas.read_sql in chunks, each chunk turned into Python dicts.
usage: pandas_extract.py CONNINFO TABLE"""
import sys
import pandas as pd
import sqlalchemy

url, table = sys.argv[1], sys.argv[2]
engine = sqlalchemy.create_engine(url.replace("postgresql://", "postgresql+psycopg2://"))
rows = 0
with engine.connect().execution_options(stream_results=True) as conn:
    for chunk in pd.read_sql(sqlalchemy.text(f"SELECT * FROM public.{table}"), conn, chunksize=50_000):
        rows += len(chunk.to_dict("records"))
print(rows)
