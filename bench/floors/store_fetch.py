"""Time one fetch of a model from a store emulator, in a fresh process: the store SDK's own parallel
download (the floor) or modelfn's verified fetch. Prints the seconds of the fetch alone (imports and
client set-up excluded, the same for both).

    python bench/floors/store_fetch.py sdk|modelfn gs|s3 BUCKET KEY SHA256 DEST_DIR
"""

import os
import sys
import time

how, scheme, bucket, key, sha256, dest = sys.argv[1:7]
os.makedirs(dest, exist_ok=True)
target = os.path.join(dest, "model.onnx")
if how == "sdk" and scheme == "gs":
    from google.cloud import storage
    from google.cloud.storage import transfer_manager

    blob = storage.Client().bucket(bucket).blob(key)
    blob.reload()
    started = time.perf_counter()
    # Threads, 8 MiB chunks, 4 workers: what modelfn uses too (processes would add their own start-up).
    transfer_manager.download_chunks_concurrently(
        blob, target, chunk_size=8 << 20, max_workers=4, worker_type=transfer_manager.THREAD
    )
elif how == "sdk" and scheme == "s3":
    import boto3
    from boto3.s3.transfer import TransferConfig

    client = boto3.client("s3")
    client.head_object(Bucket=bucket, Key=key)
    started = time.perf_counter()
    client.download_file(bucket, key, target, Config=TransferConfig(multipart_chunksize=8 << 20, max_concurrency=4))
else:
    from modelfn.runtime.artifacts import LoadPolicy, open_verified, pinned_files
    from modelfn.runtime.stores import open_store

    store, _ = open_store(f"{scheme}://{bucket}")
    store.stat(key)
    started = time.perf_counter()
    with open_verified(store, pinned_files(key, sha256, {}), LoadPolicy(dest, "keep"), what="bench"):
        pass
print(time.perf_counter() - started)
