"""The bundled job in PySpark, for `scripts/bench`: the original project's engine on the same capture.

    python bench-pyspark.py CAPTURE OUT_DIR

Reads the capture (JSON Lines, the payload as a JSON string in `value`), scales `streams` by 1e8 and
computes the average and count per genre over the whole input and per 1-minute tumbling window of the
record timestamp, as `scripts/bench`'s tributary pipeline does. Writes `OUT_DIR/global.json` (one
object per genre) and `OUT_DIR/per_minute.json` (row count and the sums of counts and averages, enough
to check the per-window results without collecting millions of rows), and prints the seconds the job
took after the session was up.
"""

import json
import sys
import time

from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T


def main() -> None:
    capture, out_dir = sys.argv[1], sys.argv[2]
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("tributary-bench")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", "4g")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    started = time.monotonic()
    envelope = T.StructType(
        [T.StructField("timestamp", T.LongType()), T.StructField("value", T.StringType())]
    )
    payload = T.StructType(
        [T.StructField("genre", T.StringType()), T.StructField("streams", T.DoubleType())]
    )
    records = (
        spark.read.schema(envelope)
        .json(capture)
        .select("timestamp", F.from_json("value", payload).alias("p"))
        .select(
            "timestamp",
            F.col("p.genre").alias("genre"),
            (F.col("p.streams") * 1e8).alias("streams"),
        )
    )
    overall = records.groupBy("genre").agg(
        F.avg("streams").alias("avg"), F.count(F.lit(1)).alias("count")
    )
    per_minute = (
        records.withColumn("ts", (F.col("timestamp") / 1000).cast("timestamp"))
        .groupBy(F.window("ts", "1 minute"), "genre")
        .agg(F.avg("streams").alias("avg"), F.count(F.lit(1)).alias("count"))
        .agg(
            F.count(F.lit(1)).alias("rows"),
            F.sum("count").alias("records"),
            F.sum("avg").alias("sum_of_avg"),
        )
    )
    rows = [r.asDict() for r in overall.collect()]
    summary = per_minute.collect()[0].asDict()
    took = time.monotonic() - started
    with open(f"{out_dir}/global.json", "w") as f:
        json.dump(rows, f)
    with open(f"{out_dir}/per_minute.json", "w") as f:
        json.dump(summary, f)
    spark.stop()
    print(f"{took:.3f}")


if __name__ == "__main__":
    main()
