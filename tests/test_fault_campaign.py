"""The fault campaign's small form: one SIGKILL of data_prep, one of pretraining, one damaged
checkpoint; every rerun must equal the uninterrupted run and leave no orphan process."""

import os

import pytest

pytest.importorskip("av")
pytest.importorskip("tensorflow")

from corp_jax.tools import fault_campaign  # pylint: disable=g-import-not-at-top


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc"), reason="orphan check needs /proc (Linux)")
def test_small_fault_campaign_loses_nothing(tmp_path):
  lines = []
  summary = fault_campaign.run(trials=1, seed=1, max_minutes=5, workdir=str(tmp_path),
                               steps=2, num_videos=4, corruptions=["truncate"],
                               log=lines.append)
  report = "\n".join(lines)
  assert summary["trials"] == 3 and summary["survived"] == 3, report
  assert summary["lost"] == 0 and summary["orphans"] == 0, report
  # The damage is always injected; a kill can come after a fast run has finished.
  assert summary["faults_injected"] >= 1, report
