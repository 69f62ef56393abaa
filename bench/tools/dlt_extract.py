"""dlt's sql_database source (pyarrow backend, its fast path) → a local duckdb file: what a dlt user would run.
usage: dlt_extract.py CONNINFO TABLE WORKDIR"""
import os, sys
import dlt
from dlt.sources.sql_database import sql_table

url, table, work = sys.argv[1], sys.argv[2], sys.argv[3]
url = url.replace("postgresql://", "postgresql+psycopg2://")
os.environ["DLT_DATA_DIR"] = os.path.join(work, "dlt-data")
pipeline = dlt.pipeline(pipeline_name=f"bench_{os.getpid()}", destination=dlt.destinations.duckdb(os.path.join(work, f"dlt_{os.getpid()}.duckdb")),
                        dataset_name="bench", pipelines_dir=os.path.join(work, "dlt-pipelines"))
info = pipeline.run(sql_table(credentials=url, table=table, schema="public", backend="pyarrow", chunk_size=50_000))
print(info)
