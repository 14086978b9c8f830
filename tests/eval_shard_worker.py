"""One process of the sharded test-view extraction test (run by tests/test_eval_sharding.py).

usage: eval_shard_worker.py PROCESS_ID NUM_PROCESSES PORT CACHE_DIR OUT.npz FILE...
Extracts the views of the test files with a small fixed feature function on this process's
own CPU device, sharded over the processes, and saves what it got back (all processes').
"""

import os
import sys

os.environ["JAX_PLATFORMS"] = "cpu"
os.environ.pop("XLA_FLAGS", None)
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
  process_id, num_processes, port = map(int, sys.argv[1:4])
  cache_dir, out, files = sys.argv[4], sys.argv[5], sys.argv[6:]
  from corp_jax.train import distributed  # pylint: disable=g-import-not-at-top
  distributed.initialize("explicit", f"127.0.0.1:{port}", num_processes, process_id,
                         local_device_count=1)
  import numpy as np  # pylint: disable=g-import-not-at-top
  from tests.test_eval_sharding import extract  # pylint: disable=g-import-not-at-top
  got = extract(files, cache_dir)
  np.savez(out, **got)


if __name__ == "__main__":
  main()
