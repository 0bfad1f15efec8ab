"""Runs modelfn.spark.predict_udf on local Spark over files, in the engines' interpreter.

``python spark_job.py CONFIG.json``; CONFIG: ``cases``, each ``name``, ``source`` (folder or registry
reference), ``kind`` and either ``text`` (files read with ``spark.read.text``, numbered by line;
``header``: drop line 1), ``table`` (CSV files with a header read with ``spark.read.csv``, every
column a string unless ``infer``, numbered by line as ``modelfn batch`` numbers them) or ``npy``
(files turned into Parquet with a ``row`` and an ``x`` column).
Writes ``report``: per case, ``[file, row, prediction, error]`` sorted, or why the UDF was refused.
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import SparkSession, Window
from pyspark.sql import functions as F

from modelfn.errors import ModelfnError
from modelfn.spark import predict_udf


def text_frame(spark, files, header):
    """Each line of each file, numbered from 1 as ``modelfn batch`` numbers them."""
    frame = spark.read.text(files).withColumn("file", F.element_at(F.split(F.input_file_name(), "/"), -1))
    order = Window.partitionBy("file").orderBy(F.monotonically_increasing_id())
    frame = frame.withColumn("row", F.row_number().over(order))
    return frame.filter(F.col("row") > 1) if header else frame


def table_frame(spark, files, infer):
    frame = spark.read.csv(files, header=True, inferSchema=infer)
    frame = frame.withColumn("file", F.element_at(F.split(F.input_file_name(), "/"), -1))
    order = Window.partitionBy("file").orderBy(F.monotonically_increasing_id())
    return frame.withColumn("row", F.row_number().over(order) + 1)  # line 1 is the header


def parquet_frame(spark, files, folder):
    paths = []
    for file in files:
        rows = np.load(file)
        offsets = pa.array(np.arange(0, rows.size + 1, rows.shape[1], dtype=np.int32))
        table = pa.table(
            {
                "file": [Path(file).name] * len(rows),
                "row": pa.array(np.arange(1, len(rows) + 1, dtype=np.int64)),
                "x": pa.ListArray.from_arrays(offsets, pa.array(rows.ravel())),
            }
        )
        paths.append(str(Path(folder) / (Path(file).stem + ".parquet")))
        pq.write_table(table, paths[-1])
    return spark.read.parquet(*paths)


def main(config_path: str) -> None:
    with open(config_path) as file:
        config = json.load(file)
    started = time.monotonic()
    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.files.maxPartitionBytes", str(1 << 30))  # one file, one partition: lines in order
        # Rows of 64 KiB: batches of a few hundred rows between the JVM and Python, not 4096 or 10000.
        .config("spark.driver.memory", "2g")
        .config("spark.sql.parquet.columnarReaderBatchSize", "256")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "256")
        .getOrCreate()
    )
    report = {"cases": {}, "jvm_seconds": time.monotonic() - started}
    for case in config["cases"]:
        try:
            predict = predict_udf(case["source"], folder=case.get("folder"), kind=case["kind"], numbered=True)
        except ModelfnError as exc:
            report["cases"][case["name"]] = {"refused": exc.message}
            continue
        if "text" in case:
            frame, columns = text_frame(spark, case["text"], case.get("header", False)), ["value"]
        elif "table" in case:
            frame, columns = table_frame(spark, case["table"], case.get("infer", False)), case["columns"]
        else:
            frame, columns = parquet_frame(spark, case["npy"], config["scratch"]), ["x"]
        result = frame.withColumn("result", predict(*columns, "row"))
        rows = result.select("file", "row", "result.prediction", "result.error").collect()
        report["cases"][case["name"]] = {
            "rows": sorted([list(r) for r in rows], key=lambda r: (r[0], r[1])),
            "types": dict(frame.dtypes),
        }
    spark.stop()
    with open(config["report"], "w") as out:
        json.dump(report, out)


if __name__ == "__main__":
    main(sys.argv[1])
