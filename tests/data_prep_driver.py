"""A data_prep conversion whose worker processes block in decoding (run by
tests/test_data_prep_faults.py, which SIGKILLs it and checks that no child survives).

usage: data_prep_driver.py VIDEO_DIR OUTPUT_DIR
Prints `started` once the pool has taken work, then waits for the kill.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def sleepy_decode(path, options):  # pylint: disable=unused-argument
  time.sleep(120)  # Longer than the test waits: only a kill ends it.


def main():
  from data_prep import annotations  # pylint: disable=g-import-not-at-top
  from data_prep import convert  # pylint: disable=g-import-not-at-top
  video_set = annotations.parse_annotations("folder", None, sys.argv[1])
  options = convert.ConvertOptions(video_dir=sys.argv[1], output_dir=sys.argv[2], name="x",
                                   num_shards=1, workers=2)
  convert.convert(video_set, options, decode_fn=sleepy_decode,
                  log=lambda m: print(m, flush=True))


if __name__ == "__main__":
  main()
