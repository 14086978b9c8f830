"""A Google Cloud Storage API server on 127.0.0.1 for tests (the gcp-storage-emulator
package, in memory, in a child process), and the environment that points every client of
the job's file layer at it:

  STORAGE_EMULATOR_HOST     gcsfs (etils.epath's gs:// backend) and google-cloud-storage
                            (tensorboardX's gs:// event writer);
  TENSORSTORE_GCS_HTTP_URL  TensorStore's GCS driver (Orbax's array data);
  EPATH_USE_TF=false        etils.epath through gcsfs, not tf.io.gfile (which has no setting
                            for another endpoint).

`gcs_bucket` (fixture) yields 'gs://<bucket>' and restores the environment afterwards.
`list_objects(bucket)` lists every object name in the store.
"""

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

# gcsfs otherwise asks the Storage Control API (gRPC, which the emulator does not serve)
# whether each bucket is zonal, retrying for a minute; read when gcsfs is imported.
os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"

_SERVER = """
import sys
from gcp_storage_emulator.handlers import objects

_download = objects.download


def download(request, response, storage, *args, **kwargs):
  # GCS sends the object's generation with its bytes; the emulator does not, and
  # TensorStore (Orbax's arrays) needs it. Patched before the server module binds its routes.
  _download(request, response, storage, *args, **kwargs)
  try:
    obj = storage.get_file_obj(request.params["bucket_name"], request.params["object_id"])
  except Exception:  # pylint: disable=broad-except
    return
  response["x-goog-generation"] = str(obj["generation"])
  response["x-goog-metageneration"] = str(obj.get("metageneration", "1"))


objects.download = download
from gcp_storage_emulator.server import create_server
server = create_server("127.0.0.1", int(sys.argv[1]), in_memory=True, default_bucket=sys.argv[2])
server.start()
print("ready", flush=True)
sys.stdin.read()  # until the test closes stdin
server.stop()
"""


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _clear_client_caches() -> None:
  """Filesystem objects cache their endpoint: drop them when the endpoint changes."""
  import gcsfs  # pylint: disable=g-import-not-at-top
  from etils.epath import backend  # pylint: disable=g-import-not-at-top
  gcsfs.GCSFileSystem.clear_instance_cache()
  backend.fsspec_backend._get_filesystem.cache_clear()  # pylint: disable=protected-access


def list_objects(bucket_uri: str) -> list[str]:
  import gcsfs  # pylint: disable=g-import-not-at-top
  fs = gcsfs.GCSFileSystem(token="anon")
  fs.invalidate_cache()
  name = bucket_uri[len("gs://"):]
  return sorted(p[len(name) + 1:] for p in fs.find(name))


@pytest.fixture
def gcs_bucket(tmp_path, monkeypatch):
  pytest.importorskip("gcp_storage_emulator")
  pytest.importorskip("gcsfs")
  port, bucket = _free_port(), "corp-test"
  log = open(tmp_path / "gcs_emulator.log", "w")
  server = subprocess.Popen([sys.executable, "-c", _SERVER, str(port), bucket],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True)
  try:
    assert server.stdout.readline().strip() == "ready", "the GCS emulator did not start"
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while True:  # the port accepts connections once the server thread runs
      try:
        urllib.request.urlopen(f"{endpoint}/storage/v1/b/{bucket}", timeout=2).read()
        break
      except OSError:
        if time.time() > deadline:
          raise
        time.sleep(0.1)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", endpoint)
    monkeypatch.setenv("TENSORSTORE_GCS_HTTP_URL", endpoint)
    monkeypatch.setenv("EPATH_USE_TF", "false")
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "corp-test")
    _clear_client_caches()
    yield f"gs://{bucket}"
  finally:
    _clear_client_caches()
    server.stdin.close()
    try:
      server.wait(timeout=10)
    except subprocess.TimeoutExpired:
      server.kill()
      server.wait()
    log.close()
