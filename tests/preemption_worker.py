"""One process of the coordinated-preemption test (run by tests/test_preemption.py).

usage: preemption_worker.py PROCESS_ID PORT PHASE ROOT
  PHASE 'run':    trains ROOT/full to the end (the uninterrupted reference), then ROOT/cut,
                  where process 1 alone sends itself SIGTERM as it draws the batch of step 3
                  and then stalls 3 s (so the notice reaches every process mid-run).
  PHASE 'resume': resumes ROOT/cut to the end.
Writes ROOT/<phase>_p<ID>.npz: final parameters of each run and each run's summary step.
"""

import os
import signal
import sys
import time

if __name__ == "__main__":  # never in a process that imports this module (pytest)
  os.environ["JAX_PLATFORMS"] = "cpu"
  os.environ.pop("XLA_FLAGS", None)
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TOTAL_STEPS = 8
SIGNAL_AT_BATCH = 2


def _config():
  from tests.train_helpers import tiny_config  # pylint: disable=g-import-not-at-top
  # log_every=1 reads the metrics every step, so no process runs ahead by more than a step.
  return tiny_config("corp_f", steps=TOTAL_STEPS, num_devices=0, train__log_every=1,
                     train__checkpoint_every=100)


def _signal_self_at(batch_index: int):
  """Wraps the input stream so that this process gets SIGTERM when drawing a given batch."""
  from corp_jax.train import inputs as inputs_lib  # pylint: disable=g-import-not-at-top
  original = inputs_lib.make_train_inputs

  def make(config, **kwargs):
    made = original(config, **kwargs)

    def batches():
      for index, batch in enumerate(made.iterator):
        if index == batch_index:
          os.kill(os.getpid(), signal.SIGTERM)
          time.sleep(3)
        yield batch

    return made.__class__(batches(), made.num_videos, made.uint8_clips)

  inputs_lib.make_train_inputs = make


def main():
  process_id, port = int(sys.argv[1]), int(sys.argv[2])
  phase, root = sys.argv[3], sys.argv[4]
  from corp_jax.train import distributed  # pylint: disable=g-import-not-at-top
  distributed.initialize("explicit", f"127.0.0.1:{port}", 2, process_id, local_device_count=1)
  import numpy as np  # pylint: disable=g-import-not-at-top
  from corp_jax.train import loop  # pylint: disable=g-import-not-at-top
  from tests.train_helpers import flat_params  # pylint: disable=g-import-not-at-top

  out = {}
  if phase == "run":
    state, summary = loop.pretrain(_config(), os.path.join(root, "full"))
    out.update({f"full/{k}": v for k, v in flat_params(state.params).items()})
    out["full/__step__"] = np.array(summary["step"])
    if process_id == 1:
      _signal_self_at(SIGNAL_AT_BATCH)
    state, summary = loop.pretrain(_config(), os.path.join(root, "cut"))
    out["cut/__step__"] = np.array(summary["step"])
    out["cut/__preempted__"] = np.array(summary["preempted"])
  else:
    state, summary = loop.pretrain(_config(), os.path.join(root, "cut"))
    out.update({f"resumed/{k}": v for k, v in flat_params(state.params).items()})
    out["resumed/__step__"] = np.array(summary["step"])
  np.savez(os.path.join(root, f"{phase}_p{process_id}.npz"),
           **{k.replace("'", ""): v for k, v in out.items()})


if __name__ == "__main__":
  main()
