"""The step at which a preempted job saves and stops, the same on every process.

Contract: `with PreemptionGuard() as guard:` around the training loop; `guard.start(step)`
once before the first step, then `guard.should_stop(step)` after every step, on every
process, with the same step numbers. It returns True at one step, the same on all
processes, once any process received SIGTERM; the loop then saves that step and exits.

One process: a SIGTERM handler sets a flag; `should_stop` is True after the step in which
the flag was seen.

Several processes: a process that acted on its own SIGTERM would enter the checkpoint save
(a collective) while the others run a training step, and the job would hang. JAX's
preemption service, started by `jax.distributed.initialize`, installs its own SIGTERM
handler (so no Python handler is installed here: it would replace it) and forwards the
notice to every process through the coordination service; each process publishes the
last step it reached and the save step is the next step of the furthest one
(`jax.experimental.multihost_utils.reached_preemption_sync_point`). A process that reaches
a step while the save step is being agreed waits for the agreement, so none can pass it.
The notice is polled once a second, so the save step comes about a second (or one step)
after the signal. If JAX's preemption service is off (`jax_enable_preemption_service`),
SIGTERM keeps its default action (the process ends; the last periodic checkpoint is kept)
and a warning says so: acting on it alone could hang the others.
"""

from __future__ import annotations

import signal
import sys

import jax


def _sync_manager_running() -> bool:
  from jax._src import distributed  # pylint: disable=g-import-not-at-top
  return (distributed.global_state.client is not None
          and distributed.global_state.preemption_sync_manager is not None)


class PreemptionGuard:
  """See the module docstring. `coordinated` tells which of the two mechanisms is used."""

  def __init__(self):
    self.coordinated = False
    self.enabled = True
    self._flag = False
    self._previous = None

  def __enter__(self):
    if jax.process_count() > 1:
      self.coordinated = _sync_manager_running()
      self.enabled = self.coordinated
      if not self.coordinated:
        print("warning: JAX's preemption service is off (jax_enable_preemption_service); "
              "SIGTERM ends this process without a checkpoint", file=sys.stderr)
      return self
    try:
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # not the main thread: no handler, no preemption support
      self._previous = None
      self.enabled = False
    return self

  def _handle(self, signum, frame):  # pylint: disable=unused-argument
    self._flag = True

  def start(self, step: int) -> None:
    """Registers the first step, so that a notice before the first training step is served."""
    if self.coordinated:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      multihost_utils.reached_preemption_sync_point(step)

  def should_stop(self, step: int) -> bool:
    if self.coordinated:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      return bool(multihost_utils.reached_preemption_sync_point(step))
    return self._flag

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
    return False
