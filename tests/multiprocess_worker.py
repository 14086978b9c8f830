"""One process of the multi-process pretraining test (run by tests/test_multiprocess.py).

usage: multiprocess_worker.py PROCESS_ID NUM_PROCESSES PORT LOCAL_DEVICES WORKDIR OUT.npz
Trains a few synthetic steps of the tiny CORP_f config over all global devices and saves
this process's copy of the final parameters.
"""

import os
import sys

os.environ["JAX_PLATFORMS"] = "cpu"
os.environ.pop("XLA_FLAGS", None)
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
  process_id, num_processes, port, local_devices = map(int, sys.argv[1:5])
  workdir, out = sys.argv[5], sys.argv[6]
  from corp_jax.train import distributed  # pylint: disable=g-import-not-at-top
  if num_processes > 1:
    distributed.initialize("explicit", f"127.0.0.1:{port}", num_processes, process_id,
                           local_device_count=local_devices)
  else:
    import jax  # pylint: disable=g-import-not-at-top
    jax.config.update("jax_num_cpu_devices", local_devices)
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from corp_jax.train import loop  # pylint: disable=g-import-not-at-top
  from tests.train_helpers import flat_params, tiny_config  # pylint: disable=g-import-not-at-top

  assert jax.process_count() == num_processes, jax.process_count()
  config = tiny_config("corp_f", steps=3, num_devices=0, train__checkpoint_every=3)
  state, summary = loop.pretrain(config, workdir)
  params = flat_params(state.params)
  np.savez(out, **{k.replace("'", ""): v for k, v in params.items()},
           __num_devices__=np.array(jax.device_count()),
           __loss__=np.array(summary["final_metrics"]["loss"]))


if __name__ == "__main__":
  main()
